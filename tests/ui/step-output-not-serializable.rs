use workflow::prelude::*;

struct Connection;

#[step]
fn connect(url: &String) -> Connection {
    let _ = url;
    Connection
}

#[step]
async fn connect_later(url: &String) -> Result<Connection, StepError> {
    let _ = url;
    Ok(Connection)
}

fn main() {}
