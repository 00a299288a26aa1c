use workflow::prelude::*;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Doc {
    text: String,
}

#[step]
fn draft(doc: &mut Doc) {
    doc.text.push_str("draft");
}

#[step]
fn publish(doc: &mut Doc) {
    doc.text.push_str(", published");
}

workflow! {
    Publish(doc: &mut Doc) {
        draft -> publish;
    }
}

fn main() {}
