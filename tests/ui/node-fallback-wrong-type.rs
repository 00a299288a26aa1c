use workflow::prelude::*;

#[step]
fn fetch(url: &String) -> Result<String, StepError> {
    Ok(url.clone())
}

#[step]
fn cached_length(url: &String) -> usize {
    url.len()
}

#[step]
fn join(a: &String, b: &String) -> String {
    format!("{a}{b}")
}

workflow! {
    /// Fallbacks must give the node's output type.
    Pages(url: String) -> String {
        #[node(fallback = 404)]
        let a = fetch(url);
        #[node(fallback_step = cached_length(url))]
        let b = fetch(url);
        join(a, b)
    }
}

fn main() {}
