//! Checks on a resolved graph: a dataflow workflow must be acyclic.
//!
//! Runs only on a graph that `Graph::build` resolved without errors. What it guarantees to
//! `expand`: every node can be scheduled (no node waits for itself, directly or not).
//! Unused outputs are not checked here: `expand` leaves them to rustc's `unused_variables`
//! lint, so that users can silence one the way they silence any unused variable.

use crate::errors::Errors;
use crate::model::{Graph, NodeId, Source};

pub(crate) fn check(graph: &Graph, errors: &mut Errors) {
    cycles(graph, errors);
    if errors.is_empty() {
        skips(graph, errors);
    }
}

/// Follows `on_failure = skip` downstream: a node that reads a node that may be skipped,
/// without `.ok()`, may be skipped too. Reports `.ok()` on something that is never skipped
/// (it would always be `Some`), and a workflow output that may be skipped (a run must end
/// with its output).
fn skips(graph: &Graph, errors: &mut Errors) {
    // For each node, the node with `on_failure = skip` that may skip it.
    let mut cause: Vec<Option<NodeId>> = vec![None; graph.nodes.len()];
    for id in topological_order(graph) {
        let node = &graph.nodes[id.0];
        let mut skipped_by = node.on_failure.is_skip().then_some(id);
        for arg in node.args.iter().chain(node.on_failure.args()) {
            let upstream = match arg.source {
                Some(Source::Node(dep)) => cause[dep.0],
                _ => None,
            };
            match (&arg.ok, upstream) {
                (Some(ok), None) => {
                    let what = match arg.source {
                        Some(Source::Input(_)) => "a workflow input",
                        _ => "the output of a node that is never skipped",
                    };
                    errors.push(syn::Error::new(
                        ok.span(),
                        format!(
                            "`{ident}` is {what}, so `{ident}.ok()` would always be `Some`: pass `{ident}` as it is; `.ok()` is for a node that may be skipped (`#[node(on_failure = skip)]`, or downstream of one)",
                            ident = arg.ident
                        ),
                    ));
                }
                (None, Some(by)) => skipped_by = skipped_by.or(Some(by)),
                _ => {}
            }
        }
        cause[id.0] = skipped_by;
    }
    if let Some(output) = &graph.output
        && let Source::Node(node) = output.source
        && let Some(by) = cause[node.0]
    {
        let by = &graph.nodes[by.0].name;
        let node = &graph.nodes[node.0].name;
        let what = if node == by {
            format!("the workflow's output `{node}` is skipped when it fails (`on_failure = skip`)")
        } else {
            format!(
                "the workflow's output `{node}` is skipped when `{by}` fails (`on_failure = skip` on `{by}`)"
            )
        };
        errors.push(syn::Error::new(
            output.span,
            format!(
                "{what}, but a run must end with its output: give `{by}` a `fallback`, or read it as `{by}.ok()` in a step that can do without it"
            ),
        ));
    }
}

/// The nodes in an order where each comes after the nodes it depends on (the graph is
/// acyclic).
fn topological_order(graph: &Graph) -> Vec<NodeId> {
    let mut waiting: Vec<usize> = graph.nodes.iter().map(|node| node.deps.len()).collect();
    let mut order: Vec<NodeId> = (0..graph.nodes.len())
        .filter(|&i| waiting[i] == 0)
        .map(NodeId)
        .collect();
    let mut next = 0;
    while let Some(&id) = order.get(next) {
        next += 1;
        for &dependent in &graph.nodes[id.0].dependents {
            waiting[dependent.0] -= 1;
            if waiting[dependent.0] == 0 {
                order.push(dependent);
            }
        }
    }
    order
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    New,
    OnPath,
    Done,
}

/// Depth-first search along "depends on" edges, in declaration order; each edge that leads
/// back onto the current path closes a cycle, reported once, on the argument that names it.
/// Iterative, so that a long chain cannot overflow the macro's stack.
fn cycles(graph: &Graph, errors: &mut Errors) {
    let mut marks = vec![Mark::New; graph.nodes.len()];
    let mut path: Vec<NodeId> = Vec::new();
    // (node, index of the next argument to follow)
    let mut stack: Vec<(NodeId, usize)> = Vec::new();
    for root in 0..graph.nodes.len() {
        if marks[root] != Mark::New {
            continue;
        }
        stack.push((NodeId(root), 0));
        marks[root] = Mark::OnPath;
        path.push(NodeId(root));
        while let Some((node, next_arg)) = stack.last_mut() {
            let node = *node;
            let Some(arg) = graph.nodes[node.0].arg(*next_arg) else {
                marks[node.0] = Mark::Done;
                path.pop();
                stack.pop();
                continue;
            };
            *next_arg += 1;
            let Some(Source::Node(dep)) = arg.source else {
                continue;
            };
            match marks[dep.0] {
                Mark::New => {
                    marks[dep.0] = Mark::OnPath;
                    path.push(dep);
                    stack.push((dep, 0));
                }
                Mark::OnPath => {
                    let start = path.iter().position(|&n| n == dep).unwrap_or(0);
                    // `path[start..]` follows "depends on" edges; data flows the other way.
                    let mut names: Vec<&str> = path[start..]
                        .iter()
                        .rev()
                        .map(|&n| graph.nodes[n.0].name.as_str())
                        .collect();
                    names.insert(0, graph.nodes[dep.0].name.as_str());
                    errors.push(syn::Error::new(
                        arg.ident.span(),
                        format!(
                            "this argument closes a cycle: {}; the steps of a workflow must not depend on their own output",
                            names.join(" -> ")
                        ),
                    ));
                }
                Mark::Done => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;
    use crate::parse::Decl;

    fn errors_of(tokens: proc_macro2::TokenStream) -> String {
        let Ok(Decl::Dataflow(input)) = syn::parse2(tokens) else {
            panic!("a dataflow workflow with valid syntax");
        };
        let mut errors = Errors::default();
        let graph = Graph::build(input, &mut errors);
        if errors.is_empty() {
            check(&graph, &mut errors);
        }
        errors
            .finish()
            .err()
            .map(|error| {
                error
                    .into_iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_cycle_is_named_in_dataflow_order() {
        let message = errors_of(quote! {
            Loop(x: u32) -> u32 {
                let a = f(x, c);
                let b = g(a);
                let c = h(b);
                c
            }
        });
        assert_eq!(
            message,
            "this argument closes a cycle: a -> b -> c -> a; the steps of a workflow must not depend on their own output"
        );
    }

    #[test]
    fn a_self_loop_is_a_cycle() {
        let message = errors_of(quote!(Loop() -> u32 { let a = f(a); a }));
        assert!(
            message.starts_with("this argument closes a cycle: a -> a;"),
            "{message}"
        );
    }

    #[test]
    fn a_diamond_is_not_a_cycle() {
        let message = errors_of(quote! {
            Diamond(x: u32) -> u32 {
                let a = f(x);
                let b = g(a);
                let c = h(a);
                join(b, c)
            }
        });
        assert_eq!(message, "");
    }

    #[test]
    fn unknown_names_get_a_suggestion() {
        let message =
            errors_of(quote!(W(topic: T) -> u32 { let research = r(topic); post(reserch) }));
        assert_eq!(
            message,
            "unknown binding `reserch`: no `let reserch = ...` and no workflow input of that name; did you mean `research`?"
        );
    }
}
