// A state graph that loops: the `overhead` benchmark's `state_loop_1000` and the
// allocation test's state-graph loop; `include!`d by both.

/// The state of a loop: how many rounds it has made, and how many it is to make.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Rounds {
    done: u64,
    goal: u64,
}

#[step]
fn round(rounds: &mut Rounds) -> bool {
    rounds.done += 1;
    rounds.done < rounds.goal
}

workflow! {
    /// Makes `round` again and again until the state says the goal is reached.
    Loop(rounds: &mut Rounds) {
        round => match {
            true => round,
            false => END,
        } max 1_000_000 => END;
    }
}
