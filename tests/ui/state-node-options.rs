use workflow::prelude::*;

#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct Doc {
    text: String,
}

#[step]
fn write(doc: &mut Doc) {
    doc.text.push('x');
}

#[step]
fn check(doc: &mut Doc) {
    doc.text.push('y');
}

workflow! {
    /// Options a state graph's node cannot take, or takes twice.
    Options(doc: &mut Doc) {
        #[node(retries = 2)] write -> #[node(on_failure = skip)] check;
        #[node(timeout = "1s")] check -> #[node(retries = 1)] END;
    }
}

fn main() {}
