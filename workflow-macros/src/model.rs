//! The resolved workflow: every argument refers to a workflow input or to a node, every node
//! has a unique name, and each node knows the nodes it waits for and the ones waiting for
//! it.
//!
//! `Graph::build` reports unknown and duplicate names; a graph built without errors is fully
//! resolved (every `Arg::source` is `Some`, `output` is `Some`), which is what `validate`
//! and `expand` rely on. Nodes keep declaration order, and the output call, if any, comes
//! last.

use std::collections::{HashMap, HashSet};

use proc_macro2::Span;
use quote::ToTokens;
use syn::spanned::Spanned as _;
use syn::{Attribute, Expr, Ident, Path, Type, Visibility};

use crate::errors::{Errors, did_you_mean, option_hint};
use crate::parse::{ArgDecl, BindingDecl, CallDecl, OutputDecl, WorkflowInput, path_name};
use crate::policy::PolicyOptions;

/// The options `#[node(...)]` takes: the policy options, then the failure policies.
const NODE_OPTIONS: [&str; 8] = [
    "retries",
    "backoff",
    "jitter",
    "timeout",
    "cache",
    "on_failure",
    "fallback",
    "fallback_step",
];

/// The index of a node in `Graph::nodes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct NodeId(pub(crate) usize);

/// Where a value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Input(usize),
    Node(NodeId),
}

pub(crate) struct Graph {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) name: Ident,
    /// Path to the facade crate (`::workflow`, or the `crate = "..."` override).
    pub(crate) krate: Path,
    pub(crate) ctx: Option<(Ident, Type)>,
    pub(crate) inputs: Vec<Input>,
    /// `None` when the `-> Type` is missing (an error was reported).
    pub(crate) output_ty: Option<Type>,
    pub(crate) nodes: Vec<Node>,
    /// `None` when the workflow has no output or it did not resolve (an error was reported).
    pub(crate) output: Option<Output>,
}

pub(crate) struct Input {
    pub(crate) name: Ident,
    pub(crate) ty: Type,
}

pub(crate) struct Node {
    /// The node's unique name: its binding, or for `let _ =` and the output call, the step's
    /// name (with a numeric suffix if that is taken).
    pub(crate) name: String,
    /// The binding as written, when the node has one (`let name = ...`).
    pub(crate) binding: Option<Ident>,
    pub(crate) step: Path,
    pub(crate) args: Vec<Arg>,
    /// What `#[node(...)]` overrides of the step's policy.
    pub(crate) policy: PolicyOptions,
    /// What happens when the node fails for good.
    pub(crate) on_failure: OnFailure,
    /// Whether `#[node(...)]` gave a failure policy (to reject a second one).
    failure_given: bool,
    /// Distinct upstream nodes, in argument order (the fallback step's arguments last).
    pub(crate) deps: Vec<NodeId>,
    /// Distinct downstream nodes, in declaration order.
    pub(crate) dependents: Vec<NodeId>,
}

pub(crate) struct Arg {
    pub(crate) ident: Ident,
    /// The `ok` of `ident.ok()`: the argument is an `Option`, `None` when its node was
    /// skipped.
    pub(crate) ok: Option<Ident>,
    pub(crate) source: Option<Source>,
}

/// A node's failure policy, from `#[node(...)]`.
pub(crate) enum OnFailure {
    /// The run fails (the default).
    Fail,
    /// `on_failure = skip`: the node and what needs it are skipped.
    Skip,
    /// `fallback = EXPR`: the node's output is the expression's value.
    Value(Box<Expr>),
    /// `fallback_step = step(args)`: the step runs in the node's place.
    Step(Fallback),
}

/// A fallback step call.
pub(crate) struct Fallback {
    pub(crate) step: Path,
    /// Resolved like a node's arguments (the call's own arguments until then).
    pub(crate) args: Vec<Arg>,
    call: Option<CallDecl>,
}

impl OnFailure {
    pub(crate) fn is_skip(&self) -> bool {
        matches!(self, Self::Skip)
    }

    /// The fallback step's arguments, if any.
    pub(crate) fn args(&self) -> &[Arg] {
        match self {
            Self::Step(fallback) => &fallback.args,
            _ => &[],
        }
    }
}

pub(crate) struct Output {
    pub(crate) source: Source,
    /// Where to point when the output's type does not match `-> Type`.
    pub(crate) span: Span,
}

impl Graph {
    pub(crate) fn build(input: WorkflowInput, errors: &mut Errors) -> Self {
        let WorkflowInput {
            attrs,
            vis,
            name,
            paren,
            params,
            output_ty,
            brace,
            lets,
            output,
        } = input;
        let (attrs, krate) = crate_override(attrs, errors);

        if output_ty.is_none() {
            errors.push(syn::Error::new(
                paren.span.close(),
                "missing output type: add `-> Type` after the workflow's inputs",
            ));
        }

        let (ctx, inputs) = context_and_inputs(params, errors);

        let mut names = Names::default();
        names.claim_inputs(&inputs, errors);

        // Declare every node first: order in the block does not matter.
        let mut nodes = Vec::with_capacity(lets.len() + 1);
        let mut calls = Vec::with_capacity(lets.len() + 1);
        for decl in lets {
            let binding = match decl.binding {
                BindingDecl::Name(ident) => {
                    names.claim(&ident, errors);
                    Some(ident)
                }
                BindingDecl::Discard => None,
            };
            let mut node = Node::new(binding, decl.call.step.clone());
            node.options(&decl.attrs, errors);
            nodes.push(node);
            calls.push(decl.call);
        }
        let mut output_call = None;
        let output_binding = match output {
            Some(OutputDecl::Call(attrs, call)) => {
                let mut node = Node::new(None, call.step.clone());
                node.options(&attrs, errors);
                nodes.push(node);
                output_call = Some(call.step.span());
                calls.push(call);
                None
            }
            Some(OutputDecl::Binding(ident)) => Some(ident),
            None => {
                errors.push(syn::Error::new(
                    brace.span.close(),
                    "this workflow has no output: end its body with the binding or step call whose value `run` returns, e.g. `publish(checked)`",
                ));
                None
            }
        };
        // Unbound nodes are named after their step, made unique.
        for node in &mut nodes {
            if node.binding.is_none() {
                node.name = names.fresh(&path_name(&node.step));
            }
        }

        for node in &nodes {
            if node.step.is_ident(&name) {
                errors.push(syn::Error::new_spanned(
                    &node.step,
                    format!("`{name}` cannot run itself as one of its nodes: its runs would nest without end"),
                ));
            }
        }

        let mut scope = Scope::of(&inputs, &nodes, ctx.as_ref().map(|(name, _)| name));
        for (node, call) in nodes.iter_mut().zip(calls) {
            node.args = scope.resolve_args(call.args, errors);
            if let OnFailure::Step(fallback) = &mut node.on_failure
                && let Some(call) = fallback.call.take()
            {
                fallback.args = scope.resolve_args(call.args, errors);
            }
        }
        let output = match (output_binding, output_call) {
            (Some(ident), _) => scope.resolve(&ident, errors).map(|source| Output {
                source,
                span: ident.span(),
            }),
            (None, Some(span)) => Some(Output {
                source: Source::Node(NodeId(nodes.len() - 1)),
                span,
            }),
            (None, None) => None,
        };

        link(&mut nodes);

        Self {
            attrs,
            vis,
            name,
            krate,
            ctx,
            inputs,
            output_ty,
            nodes,
            output,
        }
    }
}

impl Node {
    /// A node with its arguments and edges still to resolve.
    fn new(binding: Option<Ident>, step: Path) -> Self {
        Self {
            name: binding
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            binding,
            step,
            args: Vec::new(),
            policy: PolicyOptions::default(),
            on_failure: OnFailure::Fail,
            failure_given: false,
            deps: Vec::new(),
            dependents: Vec::new(),
        }
    }

    /// Argument `index`, counting the fallback step's arguments after the node's own.
    pub(crate) fn arg(&self, index: usize) -> Option<&Arg> {
        self.args.get(index).or_else(|| {
            self.on_failure
                .args()
                .get(index.checked_sub(self.args.len())?)
        })
    }

    /// Reads the node's `#[node(...)]` attributes.
    fn options(&mut self, attrs: &[Attribute], errors: &mut Errors) {
        let mut failure = Some(FailurePolicy {
            on_failure: &mut self.on_failure,
            given: &mut self.failure_given,
        });
        node_options(attrs, &mut self.policy, &mut failure, errors);
    }
}

/// Where `node_options` puts a failure policy: `None` for a node of a state graph, which
/// has none.
pub(crate) struct FailurePolicy<'a> {
    on_failure: &'a mut OnFailure,
    /// Whether one was given already.
    given: &'a mut bool,
}

/// Reads `#[node(...)]` attributes: the policy options into `policy`, and for a dataflow
/// node the failure policy.
pub(crate) fn node_options(
    attrs: &[Attribute],
    policy: &mut PolicyOptions,
    failure: &mut Option<FailurePolicy<'_>>,
    errors: &mut Errors,
) {
    for attr in attrs {
        if !attr.path().is_ident("node") {
            errors.push(syn::Error::new_spanned(
                attr,
                "unknown attribute: a node takes `#[node(...)]`, e.g. `#[node(retries = 5, timeout = \"30s\")]`",
            ));
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            let key = meta.path.to_token_stream().to_string();
            if let Some(seen) = policy.seen(&key) {
                if seen {
                    return Err(meta.error(format!("duplicate option `{key}`")));
                }
                return policy.parse(&key, &meta);
            }
            let is_failure_key = ["on_failure", "fallback", "fallback_step"].contains(&key.as_str());
            let Some(failure) = failure.as_mut().filter(|_| is_failure_key) else {
                let options: &[&str] = if failure.is_some() {
                    &NODE_OPTIONS
                } else {
                    &NODE_OPTIONS[..5]
                };
                if failure.is_none() && is_failure_key {
                    return Err(meta.error(format!(
                        "`{key}` applies to nodes of dataflow workflows: a node of a state graph that fails for good fails the run; handle an expected failure in the state and route on it"
                    )));
                }
                let hint = option_hint(&key, options);
                return Err(meta.error(format!("unknown node option `{key}`{hint}")));
            };
            let on_failure = match key.as_str() {
                "on_failure" => {
                    let value: Ident = meta.value()?.parse().map_err(|error| {
                        syn::Error::new(error.span(), "expected `skip` or `fail`: `on_failure = skip`")
                    })?;
                    match value.to_string().as_str() {
                        "skip" => OnFailure::Skip,
                        "fail" => OnFailure::Fail,
                        other => {
                            return Err(syn::Error::new(
                                value.span(),
                                format!(
                                    "unknown failure policy `{other}`; expected `skip` or `fail` (the default); for a fallback, write `fallback = VALUE` or `fallback_step = step(args)`"
                                ),
                            ));
                        }
                    }
                }
                "fallback" => OnFailure::Value(Box::new(meta.value()?.parse()?)),
                _ => {
                    let call: CallDecl = meta.value()?.parse()?;
                    OnFailure::Step(Fallback {
                        step: call.step.clone(),
                        args: Vec::new(),
                        call: Some(call),
                    })
                }
            };
            if *failure.given {
                return Err(meta.error(
                    "a node has one failure policy: `on_failure`, `fallback` and `fallback_step` exclude each other; keep one",
                ));
            }
            *failure.given = true;
            *failure.on_failure = on_failure;
            Ok(())
        });
        if let Err(error) = result {
            errors.push(error);
        }
    }
}

/// The names an argument can refer to: the inputs, then the bindings.
struct Scope<'a> {
    /// In declaration order, for suggestions.
    names: Vec<(String, Source)>,
    /// The same, hashed for lookups (the first of duplicate names, as in `names`).
    index: HashMap<String, Source>,
    /// The suggestion for each unknown name met so far: a name mistyped in many arguments
    /// is compared with every binding once.
    hints: HashMap<String, String>,
    ctx: Option<&'a Ident>,
}

impl<'a> Scope<'a> {
    fn of(inputs: &[Input], nodes: &[Node], ctx: Option<&'a Ident>) -> Self {
        let names: Vec<(String, Source)> = inputs
            .iter()
            .enumerate()
            .map(|(i, input)| (input.name.to_string(), Source::Input(i)))
            .chain(nodes.iter().enumerate().filter_map(|(i, node)| {
                node.binding
                    .as_ref()
                    .map(|b| (b.to_string(), Source::Node(NodeId(i))))
            }))
            .collect();
        let mut index = HashMap::with_capacity(names.len());
        for (name, source) in &names {
            index.entry(name.clone()).or_insert(*source);
        }
        Self {
            names,
            index,
            hints: HashMap::new(),
            ctx,
        }
    }

    fn resolve_args(
        &mut self,
        args: syn::punctuated::Punctuated<ArgDecl, syn::Token![,]>,
        errors: &mut Errors,
    ) -> Vec<Arg> {
        args.into_iter()
            .map(|ArgDecl { ident, ok }| {
                let source = self.resolve(&ident, errors);
                Arg { ident, ok, source }
            })
            .collect()
    }

    fn resolve(&mut self, ident: &Ident, errors: &mut Errors) -> Option<Source> {
        let name = ident.to_string();
        if let Some(source) = self.index.get(&name) {
            return Some(*source);
        }
        let message = if self.ctx.is_some_and(|ctx| *ctx == name) {
            format!(
                "`{name}` is the workflow's context: steps receive it through their own leading `ctx` parameter, so do not pass it as an argument"
            )
        } else {
            let names = &self.names;
            let hint = self
                .hints
                .entry(name.clone())
                .or_insert_with(|| did_you_mean(&name, names.iter().map(|(n, _)| n.as_str())));
            format!(
                "unknown binding `{name}`: no `let {name} = ...` and no workflow input of that name{hint}"
            )
        };
        errors.push(syn::Error::new(ident.span(), message));
        None
    }
}

/// Fills `deps` and `dependents` from the resolved arguments, without duplicates.
fn link(nodes: &mut [Node]) {
    for index in 0..nodes.len() {
        let mut deps = Vec::new();
        let node = &nodes[index];
        for arg in node.args.iter().chain(node.on_failure.args()) {
            if let Some(Source::Node(dep)) = arg.source
                && !deps.contains(&dep)
            {
                deps.push(dep);
            }
        }
        for &dep in &deps {
            nodes[dep.0].dependents.push(NodeId(index));
        }
        nodes[index].deps = deps;
    }
}

/// Splits the parameters into the context (a leading `ctx`) and the inputs.
fn context_and_inputs(
    params: impl IntoIterator<Item = crate::parse::ParamDecl>,
    errors: &mut Errors,
) -> (Option<(Ident, Type)>, Vec<Input>) {
    let mut params = params.into_iter().peekable();
    let ctx = params
        .next_if(|param| is_context_name(&param.name))
        .map(|param| (param.name, param.ty));
    if let Some((name, ty)) = &ctx
        && let Type::Reference(reference) = ty
    {
        errors.push(syn::Error::new(
            reference.and_token.span,
            format!(
                "the workflow owns its context: write `{name}: {}`, and steps borrow it as `&{}`",
                reference.elem.to_token_stream(),
                reference.elem.to_token_stream()
            ),
        ));
    }
    let inputs = params
        .map(|param| Input {
            name: param.name,
            ty: param.ty,
        })
        .collect();
    (ctx, inputs)
}

/// A leading parameter with one of these names is the context, in workflows and in steps.
pub(crate) fn is_context_name(ident: &Ident) -> bool {
    ident == "ctx" || ident == "_ctx"
}

/// The names taken in a workflow, to report duplicates and make unbound nodes unique.
/// Hashed, so that naming N nodes stays linear; only looked up, never iterated.
#[derive(Default)]
struct Names {
    taken: HashSet<String>,
    /// For each base `fresh` was asked for, the suffix to try next: the ones below it are
    /// taken (names are never released).
    next_suffix: HashMap<String, usize>,
}

impl Names {
    fn claim(&mut self, ident: &Ident, errors: &mut Errors) {
        let name = ident.to_string();
        if self.taken.contains(&name) {
            errors.push(syn::Error::new(
                ident.span(),
                format!("`{name}` is bound twice in this workflow: rename one of them"),
            ));
        } else {
            self.taken.insert(name);
        }
    }

    fn claim_inputs(&mut self, inputs: &[Input], errors: &mut Errors) {
        for input in inputs {
            if is_context_name(&input.name) {
                errors.push(syn::Error::new(
                    input.name.span(),
                    format!(
                        "`{}` names the workflow's context, which must be its first parameter",
                        input.name
                    ),
                ));
            }
            self.claim(&input.name, errors);
        }
    }

    /// `base`, or else `base_2`, `base_3`, ...: the first that is free.
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_owned();
        let next = self.next_suffix.entry(base.to_owned()).or_insert(2);
        while self.taken.contains(&name) {
            name = format!("{base}_{next}");
            *next += 1;
        }
        self.taken.insert(name.clone());
        name
    }
}

/// Reads `#[workflow(crate = "path")]`, keeping the other attributes.
pub(crate) fn crate_override(attrs: Vec<Attribute>, errors: &mut Errors) -> (Vec<Attribute>, Path) {
    let mut krate: Path = syn::parse_quote!(::workflow);
    let mut kept = Vec::with_capacity(attrs.len());
    for attr in attrs {
        if !attr.path().is_ident("workflow") {
            kept.push(attr);
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                let value: syn::LitStr = meta.value()?.parse()?;
                krate = value.parse()?;
                Ok(())
            } else {
                Err(meta.error(format!(
                    "unknown workflow option `{}`; expected `crate`",
                    meta.path.to_token_stream()
                )))
            }
        });
        if let Err(error) = result {
            errors.push(error);
        }
    }
    (kept, krate)
}
