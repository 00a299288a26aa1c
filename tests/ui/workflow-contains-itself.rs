use workflow::prelude::*;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Draft {
    text: String,
}

#[step]
fn write(draft: &mut Draft) {
    draft.text.push_str("more");
}

workflow! {
    Forever(draft: &mut Draft) {
        write -> Forever -> END;
    }
}

#[step]
fn count(text: &str) -> usize {
    text.len()
}

workflow! {
    Recount(text: String) -> usize {
        let again = Recount(text);
        let _ = count(text);
        again
    }
}

fn main() {}
