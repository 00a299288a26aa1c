use workflow::prelude::*;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Ticket {
    text: String,
}

#[step]
fn classify(ticket: &mut Ticket) {
    ticket.text.make_ascii_lowercase();
}

#[step]
fn billing(ticket: &mut Ticket) {
    ticket.text.push_str(" -> billing");
}

#[step]
fn support(ticket: &mut Ticket) {
    ticket.text.push_str(" -> support");
}

workflow! {
    Triage(ticket: &mut Ticket) {
        classify -> billing -> END;
        classify -> support -> END;
    }
}

fn main() {}
