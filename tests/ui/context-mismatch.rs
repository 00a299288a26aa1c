use workflow::prelude::*;

struct Llm;
struct Database;

#[step]
fn summarise(ctx: &Llm, text: &String) -> String {
    let _ = ctx;
    text.clone()
}

workflow! {
    Summary(ctx: Database, text: String) -> String {
        summarise(text)
    }
}

fn main() {}
