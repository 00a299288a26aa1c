use workflow::prelude::*;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Draft {
    text: String,
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Invoice {
    total: u64,
}

#[step]
fn write(draft: &mut Draft) {
    draft.text.push_str("hello");
}

#[step]
fn bill(invoice: &mut Invoice) {
    invoice.total += 1;
}

#[step]
fn count(draft: &Draft) -> usize {
    draft.text.len()
}

workflow! {
    Writer(draft: &mut Draft) {
        write -> bill -> count -> END;
    }
}

fn main() {}
