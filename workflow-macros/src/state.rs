//! State graphs: resolve the edges and routes of a `workflow!` whose state is `&mut`, check
//! that every run can end, and generate the typed glue the runtime walks.
//!
//! `StateGraph::build` names every node (a step path's last segment; `END` ends the run)
//! and records each node's one way on. `check` runs only on a graph built without errors
//! and guarantees to `expand`: every node has a way on, is reachable from the start, and
//! every cycle passes through a route carrying a bound (`max N => target`) whose target
//! leaves the loop, so every run reaches `END` (or fails, or hits the run's step limit,
//! which the bounds make unreachable by a correct graph).

use std::collections::HashMap;

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote};
use syn::spanned::Spanned as _;
use syn::{Attribute, Ident, Pat, Path, Type, Visibility};

use crate::errors::{Errors, did_you_mean};
use crate::expand::{
    Header, NodeWiring, Surface, doc_string, node_def, step_aliases, stub_type, workflow_impl,
    workflow_type,
};
use crate::model::{crate_override, is_context_name, node_options};
use crate::parse::{RouteDecl, StateGraphInput, StmtDecl, path_name};
use crate::policy::PolicyOptions;
use crate::tokens::{at, respan, type_string};

/// `workflow!` for a state graph: build, check, expand.
pub(crate) fn workflow(input: StateGraphInput) -> TokenStream {
    let mut errors = Errors::default();
    let graph = StateGraph::build(input, &mut errors);
    if errors.is_empty() {
        check(&graph, &mut errors);
    }
    match errors.finish() {
        Ok(()) => executor(&graph),
        Err(error) => {
            let mut out = stub(&graph);
            out.extend(error.into_compile_error());
            out
        }
    }
}

/// Where a transition leads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Node(usize),
    End,
}

struct StateGraph {
    attrs: Vec<Attribute>,
    vis: Visibility,
    name: Ident,
    krate: Path,
    ctx: Option<(Ident, Type)>,
    state: Option<(Ident, Type)>,
    nodes: Vec<Node>,
    /// Each node's index in `nodes`, by name.
    by_name: HashMap<String, usize>,
}

struct Node {
    name: String,
    /// The step path, as first written.
    path: Path,
    /// How the node goes on; `None` until an edge or route out of it is seen.
    next: Option<Next>,
    /// What `#[node(...)]` overrides of the step's policy.
    policy: PolicyOptions,
    /// Whether a mention of the node carried `#[node(...)]` already.
    options_given: bool,
}

enum Next {
    /// `a -> b`; the tokens of the edge, to point at.
    Goto {
        target: Target,
        edge: TokenStream,
    },
    Route(Route),
}

struct Route {
    match_token: syn::token::Match,
    arms: Vec<Arm>,
    bound: Option<Bound>,
}

struct Arm {
    pat: Pat,
    guard: Option<TokenStream>,
    target: Target,
    /// The target as written, to point at.
    target_path: Path,
    /// The pattern and guard as written: the edge's label.
    label: String,
}

struct Bound {
    max: u32,
    target: Target,
    target_path: Path,
}

impl StateGraph {
    fn build(input: StateGraphInput, errors: &mut Errors) -> Self {
        let StateGraphInput {
            attrs,
            vis,
            name,
            paren,
            params,
            output_ty,
            brace,
            stmts,
        } = input;
        let (attrs, krate) = crate_override(attrs, errors);
        if let Some(ty) = &output_ty {
            errors.push(syn::Error::new_spanned(
                ty,
                "a state graph's output is its final state: remove `-> Type`",
            ));
        }
        let mut ctx = None;
        let mut state = None;
        for (i, param) in params.into_iter().enumerate() {
            if param.is_state() {
                let Type::Reference(reference) = param.ty else {
                    continue;
                };
                if state.is_some() {
                    errors.push(syn::Error::new(
                        param.name.span(),
                        "a state graph has one state: merge the two into one type",
                    ));
                }
                state = Some((param.name, *reference.elem));
            } else if i == 0 && is_context_name(&param.name) {
                ctx = Some((param.name, param.ty));
            } else {
                errors.push(syn::Error::new(
                    param.name.span(),
                    format!(
                        "a state graph takes only its context and its state: make `{}` a field of the state",
                        param.name
                    ),
                ));
            }
        }
        if stmts.is_empty() {
            errors.push(syn::Error::new(
                brace.span.close(),
                "this state graph has no nodes: add edges from its first node, e.g. `first -> second -> END;`",
            ));
        }
        let _ = paren;

        let mut graph = Self {
            attrs,
            vis,
            name,
            krate,
            ctx,
            state,
            nodes: Vec::new(),
            by_name: HashMap::new(),
        };
        for stmt in stmts {
            match stmt {
                StmtDecl::Chain(chain) => {
                    let mut previous: Option<(Target, Path)> = None;
                    for (arrow, attrs, path) in chain.nodes {
                        let target = graph.intern(&path, errors);
                        graph.options(target, &path, &attrs, errors);
                        if let (Some((from, from_path)), Some(arrow)) = (previous, arrow) {
                            let edge = quote!(#from_path #arrow #path);
                            graph.set_next(from, &from_path, Next::Goto { target, edge }, errors);
                        }
                        previous = Some((target, path));
                    }
                }
                StmtDecl::Route(route) => graph.route(route, errors),
            }
        }
        graph
    }

    /// The node a path names (declaring it on first sight), or `END`.
    fn intern(&mut self, path: &Path, errors: &mut Errors) -> Target {
        if path.is_ident("END") {
            return Target::End;
        }
        let name = path_name(path);
        if path.is_ident(&self.name) {
            errors.push(syn::Error::new_spanned(
                path,
                format!(
                    "`{}` cannot run itself as one of its nodes: its runs would nest without end",
                    self.name
                ),
            ));
        }
        if let Some(&index) = self.by_name.get(&name) {
            let first = &self.nodes[index].path;
            if path.segments.len() > 1 && type_string(first) != type_string(path) {
                errors.push(syn::Error::new_spanned(
                    path,
                    format!(
                        "node `{name}` is already `{}`: two nodes cannot share a name",
                        type_string(first)
                    ),
                ));
            }
            return Target::Node(index);
        }
        self.by_name.insert(name.clone(), self.nodes.len());
        self.nodes.push(Node {
            name,
            path: path.clone(),
            next: None,
            policy: PolicyOptions::default(),
            options_given: false,
        });
        Target::Node(self.nodes.len() - 1)
    }

    /// Reads the `#[node(...)]` attributes of one mention of a node: policy options, given
    /// once per node.
    fn options(&mut self, target: Target, path: &Path, attrs: &[Attribute], errors: &mut Errors) {
        let Some(first) = attrs.first() else {
            return;
        };
        let Target::Node(index) = target else {
            errors.push(syn::Error::new_spanned(
                first,
                "`END` is not a node: it takes no `#[node(...)]` options",
            ));
            return;
        };
        let node = &mut self.nodes[index];
        if node.options_given {
            errors.push(syn::Error::new_spanned(
                first,
                format!(
                    "node `{}` has `#[node(...)]` options already: give them once, on one mention of `{}`",
                    node.name,
                    path_name(path)
                ),
            ));
            return;
        }
        node.options_given = true;
        node_options(attrs, &mut node.policy, &mut None, errors);
    }

    fn set_next(&mut self, from: Target, from_path: &Path, next: Next, errors: &mut Errors) {
        let Target::Node(index) = from else {
            errors.push(syn::Error::new_spanned(
                from_path,
                "nothing follows `END`: it ends the run",
            ));
            return;
        };
        let node = &mut self.nodes[index];
        if node.next.is_some() {
            let name = &node.name;
            let message = match &next {
                Next::Goto { .. } => format!(
                    "node `{name}` already has a way on: a node goes on one way; to choose between several, route on its return value: `{name} => match {{ ... }}`"
                ),
                Next::Route(_) => {
                    format!("node `{name}` already has a way on: put every choice into one `match`")
                }
            };
            let tokens = match &next {
                Next::Goto { edge, .. } => edge.clone(),
                Next::Route(_) => from_path.to_token_stream(),
            };
            errors.push(syn::Error::new_spanned(tokens, message));
            return;
        }
        node.next = Some(next);
    }

    fn route(&mut self, route: RouteDecl, errors: &mut Errors) {
        let RouteDecl {
            attrs,
            node,
            match_token,
            brace,
            arms,
            bound,
        } = route;
        let from = self.intern(&node, errors);
        self.options(from, &node, &attrs, errors);
        if arms.is_empty() {
            errors.push(syn::Error::new(
                brace.span.join(),
                "a route needs at least one arm: `Pattern => next_node`",
            ));
        }
        let arms = arms
            .into_iter()
            .map(|arm| {
                let target = self.intern(&arm.target, errors);
                let guard = arm.guard.map(|(if_token, expr)| quote!(#if_token #expr));
                let label = match &guard {
                    Some(guard) => format!("{} {}", label(&arm.pat), label(guard)),
                    None => label(&arm.pat),
                };
                Arm {
                    pat: arm.pat,
                    guard,
                    target,
                    target_path: arm.target,
                    label,
                }
            })
            .collect();
        let bound = bound.and_then(|bound| {
            let max = match bound.limit.base10_parse::<u32>() {
                Ok(0) | Err(_) => {
                    errors.push(syn::Error::new(
                        bound.limit.span(),
                        format!(
                            "a loop bound is a number of rounds from 1 to {}, e.g. `max 5`",
                            u32::MAX
                        ),
                    ));
                    return None;
                }
                Ok(max) => max,
            };
            let _ = bound.max;
            let target = self.intern(&bound.target, errors);
            Some(Bound {
                max,
                target,
                target_path: bound.target,
            })
        });
        let next = Next::Route(Route {
            match_token,
            arms,
            bound,
        });
        self.set_next(from, &node, next, errors);
    }

    fn successors(&self, node: usize) -> Vec<Target> {
        match &self.nodes[node].next {
            None => Vec::new(),
            Some(Next::Goto { target, .. }) => vec![*target],
            Some(Next::Route(route)) => route
                .arms
                .iter()
                .map(|arm| arm.target)
                .chain(route.bound.as_ref().map(|bound| bound.target))
                .collect(),
        }
    }

    /// The nodes a run that starts can get to, in one transition or more.
    fn reachable_from_start(&self) -> Vec<bool> {
        let mut seen = vec![false; self.nodes.len()];
        let mut stack: Vec<usize> = nodes_of(&self.successors(0)).collect();
        while let Some(node) = stack.pop() {
            if !seen[node] {
                seen[node] = true;
                stack.extend(nodes_of(&self.successors(node)));
            }
        }
        seen
    }

    /// Which transitions lead back to the node they leave: the strongly connected
    /// components of the graph.
    fn loops(&self) -> Loops {
        Loops {
            component: self.components(),
        }
    }

    /// The strongly connected component of each node (Tarjan's algorithm, linear in the
    /// nodes and transitions; iterative, so that a long chain cannot overflow the macro's
    /// stack).
    fn components(&self) -> Vec<usize> {
        const UNSEEN: usize = usize::MAX;
        let successors: Vec<Vec<usize>> = (0..self.nodes.len())
            .map(|node| nodes_of(&self.successors(node)).collect())
            .collect();
        // Per node: when the search met it, the earliest node on the stack it leads back
        // to, and its component once it is complete (`UNSEEN` while it is on the stack).
        let mut order = vec![UNSEEN; successors.len()];
        let mut low = vec![UNSEEN; successors.len()];
        let mut component = vec![UNSEEN; successors.len()];
        let mut stack = Vec::new();
        let mut calls: Vec<(usize, usize)> = Vec::new();
        let (mut met, mut components) = (0, 0);
        for root in 0..successors.len() {
            if order[root] != UNSEEN {
                continue;
            }
            (order[root], low[root]) = (met, met);
            met += 1;
            stack.push(root);
            calls.push((root, 0));
            while let Some((node, next)) = calls.last_mut() {
                let node = *node;
                if let Some(&to) = successors[node].get(*next) {
                    *next += 1;
                    if order[to] == UNSEEN {
                        (order[to], low[to]) = (met, met);
                        met += 1;
                        stack.push(to);
                        calls.push((to, 0));
                    } else if component[to] == UNSEEN {
                        low[node] = low[node].min(order[to]);
                    }
                    continue;
                }
                calls.pop();
                if let Some(&(parent, _)) = calls.last() {
                    low[parent] = low[parent].min(low[node]);
                }
                if low[node] == order[node] {
                    while let Some(member) = stack.pop() {
                        component[member] = components;
                        if member == node {
                            break;
                        }
                    }
                    components += 1;
                }
            }
        }
        component
    }
}

/// Which transitions close a loop.
struct Loops {
    component: Vec<usize>,
}

impl Loops {
    /// Whether a run can get from `target` back to `node`, for a `target` that `node` leads
    /// to (an arm or bound of its route): then both lie on one cycle, which is what one
    /// strongly connected component is.
    fn back(&self, target: Target, node: usize) -> bool {
        match target {
            Target::Node(target) => self.component[target] == self.component[node],
            Target::End => false,
        }
    }
}

/// A pattern or guard as people write it: `(Kind::Bug, p) if p >= 5`.
fn label(tokens: &impl ToTokens) -> String {
    let mut text = tokens.to_token_stream().to_string();
    for (spaced, tight) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" ,", ","),
        ("( ", "("),
        (" )", ")"),
        ("[ ", "["),
        (" ]", "]"),
        ("& ", "&"),
        (" (", "("),
    ] {
        text = text.replace(spaced, tight);
    }
    // `A | B` and `x if (y)` keep their spaces.
    text.replace("|(", "| (").replace("if(", "if (")
}

fn nodes_of(targets: &[Target]) -> impl Iterator<Item = usize> + '_ {
    targets.iter().filter_map(|target| match target {
        Target::Node(node) => Some(*node),
        Target::End => None,
    })
}

/// Every node goes on, is reachable, and every loop is bounded.
fn check(graph: &StateGraph, errors: &mut Errors) {
    let names: Vec<&str> = graph
        .nodes
        .iter()
        .filter(|node| node.next.is_some())
        .map(|node| node.name.as_str())
        .collect();
    for node in &graph.nodes {
        if node.next.is_some() {
            continue;
        }
        let hint = did_you_mean(&node.name, names.iter().copied());
        let message = if hint.is_empty() {
            format!(
                "node `{0}` is a dead end: no edge or route leaves it, so a run that reaches it can never reach `END`; add `{0} -> END;` or a way on",
                node.name
            )
        } else {
            format!(
                "unknown node `{}`{hint} (every node of a state graph has an edge or route out of it)",
                node.name
            )
        };
        errors.push(syn::Error::new_spanned(&node.path, message));
    }
    if !errors.is_empty() {
        return;
    }
    let reachable = graph.reachable_from_start();
    let start = &graph.nodes[0].name;
    for (index, node) in graph.nodes.iter().enumerate().skip(1) {
        if !reachable[index] {
            errors.push(syn::Error::new_spanned(
                &node.path,
                format!(
                    "node `{}` is unreachable: no edge or route leads to it from `{start}`, where the run starts",
                    node.name
                ),
            ));
        }
    }
    let loops = graph.loops();
    let loops = |target: Target, route: usize| loops.back(target, route);
    for (index, node) in graph.nodes.iter().enumerate() {
        if let Some(Next::Route(Route {
            bound: Some(bound), ..
        })) = &node.next
            && loops(bound.target, index)
        {
            errors.push(syn::Error::new_spanned(
                &bound.target_path,
                format!(
                    "the bound's target `{}` leads back into the loop it ends: send the run past the loop, e.g. `max {} => END`",
                    path_name(&bound.target_path),
                    bound.max
                ),
            ));
        }
    }
    if errors.is_empty() {
        cycles(graph, &loops, errors);
    }
}

/// One transition of the graph, for the cycle search: where it leads, and for an arm,
/// which one.
#[derive(Clone, Copy)]
struct Step {
    target: usize,
    arm: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    New,
    OnPath,
    Done,
}

/// Depth-first search along every transition except the arms that a bound ends (the
/// looping arms of a bounded route); any cycle left can run forever. Iterative, so that a
/// long chain cannot overflow the macro's stack.
fn cycles(graph: &StateGraph, loops: &dyn Fn(Target, usize) -> bool, errors: &mut Errors) {
    let steps: Vec<Vec<Step>> = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(index, node)| match &node.next {
            Some(Next::Goto {
                target: Target::Node(target),
                ..
            }) => vec![Step {
                target: *target,
                arm: None,
            }],
            Some(Next::Route(route)) => route
                .arms
                .iter()
                .enumerate()
                .filter(|(_, arm)| route.bound.is_none() || !loops(arm.target, index))
                .filter_map(|(i, arm)| match arm.target {
                    Target::Node(target) => Some(Step {
                        target,
                        arm: Some(i),
                    }),
                    Target::End => None,
                })
                .chain(route.bound.as_ref().and_then(|bound| match bound.target {
                    Target::Node(target) => Some(Step { target, arm: None }),
                    Target::End => None,
                }))
                .collect(),
            _ => Vec::new(),
        })
        .collect();

    let mut marks = vec![Mark::New; graph.nodes.len()];
    // The path: each node with the transition taken out of it.
    let mut path: Vec<(usize, Step)> = Vec::new();
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in 0..graph.nodes.len() {
        if marks[root] != Mark::New {
            continue;
        }
        marks[root] = Mark::OnPath;
        stack.push((root, 0));
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            let Some(&step) = steps[node].get(*next) else {
                marks[node] = Mark::Done;
                stack.pop();
                path.pop();
                continue;
            };
            *next += 1;
            match marks[step.target] {
                Mark::New => {
                    marks[step.target] = Mark::OnPath;
                    path.push((node, step));
                    stack.push((step.target, 0));
                }
                Mark::OnPath => {
                    let begin = path
                        .iter()
                        .position(|(from, _)| *from == step.target)
                        .unwrap_or(path.len());
                    let cycle: Vec<(usize, Step)> = path[begin..]
                        .iter()
                        .copied()
                        .chain(std::iter::once((node, step)))
                        .collect();
                    errors.push(unending(graph, &cycle));
                }
                Mark::Done => {}
            }
        }
    }
}

/// The error for a cycle that nothing bounds: at its first route's arm if it has a route,
/// else at the edge that closes it.
fn unending(graph: &StateGraph, cycle: &[(usize, Step)]) -> syn::Error {
    let mut names: Vec<&str> = cycle
        .iter()
        .map(|(node, _)| graph.nodes[*node].name.as_str())
        .collect();
    names.push(names[0]);
    let names = names.join(" -> ");
    let route = cycle.iter().find_map(|(node, step)| {
        let Some(Next::Route(route)) = &graph.nodes[*node].next else {
            return None;
        };
        step.arm.map(|arm| (*node, &route.arms[arm]))
    });
    if let Some((node, arm)) = route {
        let name = &graph.nodes[node].name;
        let pat = &arm.pat;
        let target = &arm.target_path;
        return syn::Error::new_spanned(
            quote!(#pat #target),
            format!(
                "this loop has no bound: {names}; bound it on the route of `{name}`: after its `match {{ ... }}` write `max 5 => END` (at most 5 rounds of `{name}`, then `END`, or a node past the loop)"
            ),
        );
    }
    let (_, last) = cycle[cycle.len() - 1];
    let closing = cycle
        .iter()
        .rev()
        .find_map(|(node, _)| match &graph.nodes[*node].next {
            Some(Next::Goto { edge, .. }) => Some(edge.clone()),
            _ => None,
        })
        .unwrap_or_else(|| graph.nodes[last.target].path.to_token_stream());
    syn::Error::new_spanned(
        closing,
        format!(
            "this edge closes a cycle that no route can leave, so a run entering it never ends: {names}; leave it through a route with a bound, e.g. `node => match {{ ... }} max 5 => END`"
        ),
    )
}

fn surface(graph: &StateGraph) -> Surface {
    let krate = &graph.krate;
    let ctx_ty = graph
        .ctx
        .as_ref()
        .map_or_else(|| quote!(()), |(_, ty)| ty.to_token_stream());
    let state_ty = graph
        .state
        .as_ref()
        .map_or_else(|| quote!(()), |(_, ty)| ty.to_token_stream());
    Surface {
        private: quote!(#krate::__private),
        ctx_ty,
        input_ty: state_ty.clone(),
        output_ty: state_ty,
    }
}

fn header(graph: &StateGraph) -> Header<'_> {
    Header {
        attrs: &graph.attrs,
        vis: &graph.vis,
        name: &graph.name,
        has_ctx: graph.ctx.is_some(),
    }
}

/// The workflow type alone, for a graph with errors.
fn stub(graph: &StateGraph) -> TokenStream {
    stub_type(&header(graph), &surface(graph))
}

/// The full expansion of a checked state graph.
fn executor(graph: &StateGraph) -> TokenStream {
    let surface = surface(graph);
    let Surface {
        private,
        ctx_ty,
        input_ty: state_ty,
        ..
    } = &surface;
    let name = &graph.name;
    let workflow_impl = workflow_impl(name, &surface);
    let (ty, impls) = workflow_type(
        &header(graph),
        &surface,
        [
            quote!(#private::run_state::<Self>(&self.__wf_ctx, &self.__wf_options, input)),
            quote!(#private::start_state::<Self>(&self.__wf_ctx, &self.__wf_options, input)),
            quote!(&__WF_GRAPH),
        ],
    );
    let (aliases, alias_decls) = step_aliases(graph.nodes.iter().map(|node| &node.path));
    let graph_static = graph_static(graph, &aliases, private);
    let node_fns = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| node_fn(i, node, &aliases[i], &surface));
    let node_names = (0..graph.nodes.len()).map(|i| format_ident!("__wf_node{}", i));
    let as_step = crate::expand::state_graph_as_step(&header(graph), &surface);
    let persist_impl = crate::expand::persist_impl(
        name,
        &surface,
        [
            &quote!(#private::drive_state_graph::<Self>(
                ctx,
                options,
                run,
                <Self as #private::Persist<__X>>::save_input,
                <Self as #private::Persist<__X>>::load_input,
            )),
            &quote!(#private::answer_state_graph::<Self>(
                args,
                <Self as #private::Persist<__X>>::save_input,
                <Self as #private::Persist<__X>>::load_input,
            )),
        ],
        Some(&quote!(#private::work_state_graph::<Self>(
            ctx,
            options,
            task,
            (
                <Self as #private::Persist<__X>>::save_input,
                <Self as #private::Persist<__X>>::load_input,
            ),
        ))),
    );

    quote! {
        #ty

        const _: () = {
            #impls

            #(#alias_decls)*

            #graph_static

            #workflow_impl

            impl #private::CompiledStateGraph for #name {
                type State = #state_ty;

                fn node(
                    ctx: &#private::ArcPtr<#ctx_ty>,
                    node: #private::NodeId,
                    state: #state_ty,
                    answer: ::core::option::Option<#private::JsonValue>,
                ) -> #private::StateFuture<#state_ty> {
                    const NODES: &[fn(
                        &#private::ArcPtr<#ctx_ty>,
                        #state_ty,
                        ::core::option::Option<#private::JsonValue>,
                    ) -> #private::StateFuture<#state_ty>] = &[#(#node_names),*];
                    match NODES.get(node.0) {
                        ::core::option::Option::Some(attempt) => attempt(ctx, state, answer),
                        ::core::option::Option::None => ::std::boxed::Box::pin(async {
                            ::core::result::Result::Err(#private::StepError::msg(
                                "internal error: no such node",
                            ))
                        }),
                    }
                }
            }

            #persist_impl

            #as_step

            #(#node_fns)*
        };
    }
}

/// One attempt of a node: call its step on the state, then pick the route's arm. The call
/// is spanned at the node's first mention, the `match` at the user's `match` token, so a
/// wrong state type or a forgotten variant is reported inside the graph.
fn node_fn(index: usize, node: &Node, alias: &Ident, surface: &Surface) -> TokenStream {
    let Surface {
        private,
        ctx_ty,
        input_ty: state_ty,
        ..
    } = surface;
    let span = node.path.span();
    let call = respan(
        quote!(<#alias as #private::StateStep<#ctx_ty, #state_ty>>::call(&__wf_ctx, &mut __wf_state).await?),
        span,
    );
    // Spanned like the call: a node over the wrong state is one error, not two.
    let answer = respan(
        quote!(<#alias as #private::StateStep<#ctx_ty, #state_ty>>::answer(&mut __wf_state, __wf_answer)?),
        span,
    );
    let pick = if let Some(Next::Route(route)) = &node.next {
        {
            let match_token = &route.match_token;
            let value = respan(quote!(__wf_value), at(match_token.span));
            let arms = route.arms.iter().enumerate().map(|(i, arm)| {
                let pat = &arm.pat;
                let guard = &arm.guard;
                quote!(#pat #guard => #i,)
            });
            quote! {
                #[allow(clippy::match_same_arms)]
                let __wf_arm: usize = #match_token #value { #(#arms)* };
            }
        }
    } else {
        quote! {
            let _ = __wf_value;
            let __wf_arm: usize = 0;
        }
    };
    let function = format_ident!("__wf_node{}", index);
    quote! {
        fn #function(
            ctx: &#private::ArcPtr<#ctx_ty>,
            state: #state_ty,
            answer: ::core::option::Option<#private::JsonValue>,
        ) -> #private::StateFuture<#state_ty> {
            let __wf_ctx = #private::ArcPtr::clone(ctx);
            ::std::boxed::Box::pin(async move {
                let mut __wf_state = state;
                let __wf_value = match answer {
                    ::core::option::Option::None => #call,
                    ::core::option::Option::Some(__wf_answer) => #answer,
                };
                #pick
                ::core::result::Result::Ok((__wf_state, __wf_arm))
            })
        }
    }
}

fn graph_static(graph: &StateGraph, aliases: &[Ident], private: &TokenStream) -> TokenStream {
    let name = graph.name.to_string();
    let doc = doc_string(&graph.attrs);
    let (state_name, state_type) = graph.state.as_ref().map_or_else(
        || (String::new(), String::new()),
        |(name, ty)| (name.to_string(), type_string(ty)),
    );
    let nodes = graph.nodes.iter().zip(aliases).map(|(node, alias)| {
        let policy = (!node.policy.is_empty()).then(|| {
            node.policy
                .tokens(private, Some(quote!(<#alias as #private::Step>::POLICY)))
        });
        node_def(
            private,
            &node.name,
            alias,
            NodeWiring {
                policy,
                ..NodeWiring::default()
            },
        )
    });
    let target = |target: Target| match target {
        Target::Node(node) => quote!(#private::Target::Node(#private::NodeId(#node))),
        Target::End => quote!(#private::Target::End),
    };
    let loops = graph.loops();
    let next = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(index, node)| match &node.next {
            Some(Next::Route(route)) => {
                let arms = route.arms.iter().map(|arm| {
                    let pattern = &arm.label;
                    let to = target(arm.target);
                    let loops = loops.back(arm.target, index);
                    quote!(#private::Arm { pattern: #pattern, target: #to, loops: #loops })
                });
                let bound = route.bound.as_ref().map_or_else(
                || quote!(::core::option::Option::None),
                |bound| {
                    let max = bound.max;
                    let to = target(bound.target);
                    quote!(::core::option::Option::Some(#private::Bound { max: #max, target: #to }))
                },
            );
                quote!(#private::Next::Route { arms: &[#(#arms),*], bound: #bound })
            }
            Some(Next::Goto { target: to, .. }) => {
                let to = target(*to);
                quote!(#private::Next::Goto { target: #to })
            }
            None => quote!(#private::Next::Goto { target: #private::Target::End }),
        });
    quote! {
        static __WF_GRAPH: #private::Graph = #private::Graph {
            name: #name,
            doc: #doc,
            inputs: &[#private::InputDef { name: #state_name, ty: #state_type }],
            nodes: &[#(#nodes),*],
            output: #private::Source::Input(0),
            output_type: #state_type,
            shape: #private::Shape::StateGraph(#private::StateGraphDef {
                state_type: #state_type,
                start: #private::NodeId(0),
                next: &[#(#next),*],
            }),
            costs: &[],
        };
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;
    use crate::parse::Decl;

    /// Two loops, `a -> b -> a` and `c -> d -> c`, joined by `b -> c`, and a tail `e`.
    #[test]
    fn an_arm_loops_when_its_target_leads_back_to_its_route() {
        let Ok(Decl::State(input)) = syn::parse2(quote! {
            G(state: &mut S) {
                a -> b;
                b => match { X => c, Y => a, Z => b } max 3 => d;
                c -> d;
                d => match { X => e, Y => c } max 2 => END;
                e -> END;
            }
        }) else {
            panic!("a state graph");
        };
        let mut errors = Errors::default();
        let graph = StateGraph::build(input, &mut errors);
        check(&graph, &mut errors);
        assert!(errors.is_empty());
        let loops = graph.loops();
        let looping = |node: usize| -> Vec<bool> {
            let Some(Next::Route(route)) = &graph.nodes[node].next else {
                panic!("a route");
            };
            let bound = route.bound.as_ref().map(|bound| bound.target);
            route
                .arms
                .iter()
                .map(|arm| arm.target)
                .chain(bound)
                .map(|target| loops.back(target, node))
                .collect()
        };
        let names: Vec<&str> = graph.nodes.iter().map(|node| node.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d", "e"]);
        assert_eq!(looping(1), [false, true, true, false]);
        assert_eq!(looping(3), [false, true, false]);
        let reachable = graph.reachable_from_start();
        assert_eq!(reachable, [true, true, true, true, true]);
    }
}
