use workflow::prelude::*;

#[step]
fn fetch(url: &String) -> String {
    url.clone()
}

#[step]
fn describe(url: Option<&String>, page: Option<&String>) -> String {
    format!("{url:?} {page:?}")
}

workflow! {
    /// `.ok()` on values that are always there.
    Describe(url: String) -> String {
        let page = fetch(url);
        describe(url.ok(), page.ok())
    }
}

fn main() {}
