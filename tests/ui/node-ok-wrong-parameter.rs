use workflow::prelude::*;

#[step]
fn fetch(url: &String) -> Result<String, StepError> {
    Ok(url.clone())
}

#[step]
fn length(page: &String) -> usize {
    page.len()
}

#[step]
fn maybe_length(page: Option<&String>) -> usize {
    page.map_or(0, String::len)
}

#[step]
fn sum(a: &usize, b: Option<&usize>) -> usize {
    a + b.copied().unwrap_or(0)
}

workflow! {
    /// `.ok()` into a parameter that is not an `Option`, and the reverse.
    Lengths(url: String) -> usize {
        #[node(on_failure = skip)]
        let page = fetch(url);
        let a = length(page.ok());
        let b = maybe_length(page);
        sum(a, b.ok())
    }
}

fn main() {}
