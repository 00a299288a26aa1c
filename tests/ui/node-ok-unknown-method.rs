use workflow::prelude::*;

#[step]
fn fetch(url: &String) -> Result<String, StepError> {
    Ok(url.clone())
}

#[step]
fn maybe_length(page: Option<&String>) -> usize {
    page.map_or(0, String::len)
}

workflow! {
    /// Only `.ok()` is allowed on an argument.
    Length(url: String) -> usize {
        #[node(on_failure = skip)]
        let page = fetch(url);
        maybe_length(page.unwrap())
    }
}

fn main() {}
