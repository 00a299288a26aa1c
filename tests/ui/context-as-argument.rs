use workflow::prelude::*;

struct Llm;

#[step]
fn summarise(ctx: &Llm, text: &String) -> String {
    let _ = ctx;
    text.clone()
}

workflow! {
    Summary(ctx: Llm, text: String) -> String {
        summarise(ctx, text)
    }
}

fn main() {}
