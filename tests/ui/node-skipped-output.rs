use workflow::prelude::*;

#[step]
fn fetch(url: &String) -> Result<String, StepError> {
    Ok(url.clone())
}

#[step]
fn length(page: &String) -> usize {
    page.len()
}

workflow! {
    /// The output needs `page`, which may be skipped.
    PageLength(url: String) -> usize {
        #[node(on_failure = skip)]
        let page = fetch(url);
        length(page)
    }
}

fn main() {}
