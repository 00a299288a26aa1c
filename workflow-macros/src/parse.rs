//! The surface syntax of `workflow!`, parsed into a tree that keeps every token (and so every
//! span) the user wrote.
//!
//! ```text
//! workflow! {
//!     #[attributes]*                       // doc comments, #[workflow(crate = "path")]
//!     VIS NAME ( [ctx: CTX,] (INPUT: TYPE),* ) -> OUTPUT {
//!         ([#[node(OPTIONS)]] let BINDING = STEP_PATH(ARG, ...);)*   // BINDING: a name or `_`
//!         [#[node(OPTIONS)]] STEP_PATH(ARG, ...) | BINDING           // the output, no `;`
//!     }
//! }
//! ```
//!
//! `ARG` is a binding or input, or `binding.ok()`. `OPTIONS` are read by `model`.
//!
//! A state graph takes its state as `&mut`, has no output type (its output is the final
//! state), and its body is edges and routes:
//!
//! ```text
//! workflow! {
//!     VIS NAME ( [ctx: CTX,] STATE: &mut TYPE ) {
//!         ([#[node(POLICY)]] NODE (-> [#[node(POLICY)]] NODE)+ ;)*   // edges; NODE may be `END`
//!         ([#[node(POLICY)]] NODE => match { (PATTERN [if GUARD] => NODE,)* } [max N => NODE] [;])*
//!     }
//! }
//! ```
//!
//! Parsing checks only the shape; names are resolved by `model` (and `state` for state
//! graphs).

use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{
    Attribute, Expr, Ident, LitInt, Pat, Path, Token, Type, Visibility, braced, parenthesized,
    token,
};

mod kw {
    syn::custom_keyword!(max);
}

/// A `workflow!` input: a dataflow workflow or a state graph, told apart by a `&mut`
/// parameter (the state).
pub(crate) enum Decl {
    Dataflow(WorkflowInput),
    State(StateGraphInput),
}

/// A state graph's `workflow! { ... }` input.
pub(crate) struct StateGraphInput {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) name: Ident,
    pub(crate) paren: token::Paren,
    pub(crate) params: Punctuated<ParamDecl, Token![,]>,
    pub(crate) output_ty: Option<Type>,
    pub(crate) brace: token::Brace,
    pub(crate) stmts: Vec<StmtDecl>,
}

/// One statement of a state graph.
pub(crate) enum StmtDecl {
    /// `a -> b -> c;`
    Chain(ChainDecl),
    /// `a => match { ... } [max N => b]`
    Route(RouteDecl),
}

/// `a -> b -> c;`: the nodes in order, each with the arrow before it (none for the first)
/// and its `#[node(...)]` attributes.
pub(crate) struct ChainDecl {
    pub(crate) nodes: Vec<(Option<Token![->]>, Vec<Attribute>, Path)>,
}

/// `node => match { arms } [max N => target]`
pub(crate) struct RouteDecl {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) node: Path,
    pub(crate) match_token: Token![match],
    pub(crate) brace: token::Brace,
    pub(crate) arms: Vec<ArmDecl>,
    pub(crate) bound: Option<BoundDecl>,
}

/// `Pattern [if guard] => target`
pub(crate) struct ArmDecl {
    pub(crate) pat: Pat,
    pub(crate) guard: Option<(Token![if], Box<Expr>)>,
    pub(crate) target: Path,
}

/// `max N => target`
pub(crate) struct BoundDecl {
    pub(crate) max: kw::max,
    pub(crate) limit: LitInt,
    pub(crate) target: Path,
}

/// The whole `workflow! { ... }` input.
pub(crate) struct WorkflowInput {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) name: Ident,
    pub(crate) paren: token::Paren,
    pub(crate) params: Punctuated<ParamDecl, Token![,]>,
    pub(crate) output_ty: Option<Type>,
    pub(crate) brace: token::Brace,
    pub(crate) lets: Vec<LetDecl>,
    pub(crate) output: Option<OutputDecl>,
}

/// `name: Type` in the workflow's parameter list.
pub(crate) struct ParamDecl {
    pub(crate) name: Ident,
    pub(crate) ty: Type,
}

/// `[#[node(...)]] let binding = step(args);`
pub(crate) struct LetDecl {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) binding: BindingDecl,
    pub(crate) call: CallDecl,
}

/// The left side of a `let`.
pub(crate) enum BindingDecl {
    /// `let name = ...`
    Name(Ident),
    /// `let _ = ...`: the node runs, its output is not used.
    Discard,
}

/// `step_path(arg, ...)`
pub(crate) struct CallDecl {
    pub(crate) step: Path,
    pub(crate) args: Punctuated<ArgDecl, Token![,]>,
}

/// An argument: a binding or workflow input, read as it is or, with `.ok()`, as an
/// `Option` that is `None` when its node was skipped.
pub(crate) struct ArgDecl {
    pub(crate) ident: Ident,
    /// The `ok` of `.ok()`.
    pub(crate) ok: Option<Ident>,
}

/// The workflow's final expression.
pub(crate) enum OutputDecl {
    /// A step call whose output is the workflow's, with its `#[node(...)]` attributes.
    Call(Vec<Attribute>, CallDecl),
    /// A binding whose value is the workflow's output.
    Binding(Ident),
}

impl Parse for Decl {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let name: Ident = input.parse().map_err(|error| {
            syn::Error::new(
                error.span(),
                "expected the workflow's name, e.g. `pub ContentPipeline(ctx: Ctx, topic: Topic) -> Post { ... }`",
            )
        })?;
        let content;
        let paren = parenthesized!(content in input);
        let params = content.parse_terminated(ParamDecl::parse, Token![,])?;
        let state_graph = params.iter().any(ParamDecl::is_state);
        let output_ty = if input.peek(Token![->]) {
            input.parse::<Token![->]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        let lookahead = input.lookahead1();
        if !lookahead.peek(token::Brace) {
            return Err(match &output_ty {
                None => lookahead.error(),
                // At the end of the input, syn's span is the whole macro call.
                Some(ty) if input.is_empty() => syn::Error::new_spanned(
                    ty,
                    "expected the workflow's body `{ ... }` after the output type",
                ),
                Some(_) => syn::Error::new(
                    input.span(),
                    "expected the workflow's body `{ ... }` after the output type",
                ),
            });
        }
        let body;
        let brace = braced!(body in input);
        let decl = if state_graph {
            let mut stmts = Vec::new();
            while !body.is_empty() {
                stmts.push(body.parse()?);
            }
            Self::State(StateGraphInput {
                attrs,
                vis,
                name,
                paren,
                params,
                output_ty,
                brace,
                stmts,
            })
        } else {
            let (lets, output) = dataflow_body(&body)?;
            Self::Dataflow(WorkflowInput {
                attrs,
                vis,
                name,
                paren,
                params,
                output_ty,
                brace,
                lets,
                output,
            })
        };
        if !input.is_empty() {
            return Err(input.error("expected one workflow per `workflow!` invocation"));
        }
        Ok(decl)
    }
}

fn dataflow_body(body: ParseStream<'_>) -> syn::Result<(Vec<LetDecl>, Option<OutputDecl>)> {
    let mut lets = Vec::new();
    let mut output = None;
    while !body.is_empty() {
        let attrs = body.call(Attribute::parse_outer)?;
        if body.peek(Token![let]) {
            let mut decl: LetDecl = body.parse()?;
            decl.attrs = attrs;
            lets.push(decl);
            continue;
        }
        if body.peek(Ident) && (body.peek2(Token![->]) || body.peek2(Token![=>])) {
            return Err(body.error(
                "edges and routes belong to state graphs: take the state as a parameter `state: &mut State`; a dataflow workflow wires steps with `let x = step(args);`",
            ));
        }
        output = Some(match body.parse()? {
            OutputDecl::Call(_, call) => OutputDecl::Call(attrs, call),
            OutputDecl::Binding(ident) => {
                if let Some(attr) = attrs.first() {
                    return Err(syn::Error::new_spanned(
                        attr,
                        format!(
                            "`#[node(...)]` goes on a step call, and `{ident}` is a binding: put it on the `let` that binds `{ident}`"
                        ),
                    ));
                }
                OutputDecl::Binding(ident)
            }
        });
        if body.peek(Token![;]) {
            let semi: Token![;] = body.parse()?;
            return Err(syn::Error::new(
                semi.span,
                "the workflow's output is its last expression: remove this `;`",
            ));
        }
        if !body.is_empty() {
            return Err(body.error("expected the end of the workflow after its output"));
        }
    }
    Ok((lets, output))
}

impl ParamDecl {
    /// `name: &mut T`: the state of a state graph.
    pub(crate) fn is_state(&self) -> bool {
        matches!(&self.ty, Type::Reference(reference) if reference.mutability.is_some())
    }
}

impl Parse for StmtDecl {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let first = node_path(input)?;
        let lookahead = input.lookahead1();
        if lookahead.peek(Token![=>]) {
            input.parse::<Token![=>]>()?;
            return route(input, attrs, first).map(Self::Route);
        }
        if !lookahead.peek(Token![->]) {
            return Err(lookahead.error());
        }
        let mut nodes = vec![(None, attrs, first)];
        while input.peek(Token![->]) {
            let arrow: Token![->] = input.parse()?;
            let attrs = input.call(Attribute::parse_outer)?;
            nodes.push((Some(arrow), attrs, node_path(input)?));
        }
        if !input.peek(Token![;]) {
            return Err(input.error("expected `->` and the next node, or `;` to end the edges"));
        }
        input.parse::<Token![;]>()?;
        Ok(Self::Chain(ChainDecl { nodes }))
    }
}

/// A node of a state graph: a step path, or `END`.
fn node_path(input: ParseStream<'_>) -> syn::Result<Path> {
    input.call(Path::parse_mod_style).map_err(|error| {
        syn::Error::new(
            error.span(),
            "expected a node of the state graph (a `#[step]` function) or `END`",
        )
    })
}

/// The rest of `node => match { ... } [max N => target] [;]`, after the `=>`.
fn route(input: ParseStream<'_>, attrs: Vec<Attribute>, node: Path) -> syn::Result<RouteDecl> {
    let match_token: Token![match] = input.parse().map_err(|error| {
        syn::Error::new(
            error.span(),
            "expected `match`: a route matches on the node's return value, e.g. `review => match { Verdict::Pass => END, Verdict::Revise => revise }`",
        )
    })?;
    let content;
    let brace = braced!(content in input);
    let mut arms = Vec::new();
    while !content.is_empty() {
        let pat = Pat::parse_multi_with_leading_vert(&content)?;
        let guard = if content.peek(Token![if]) {
            let if_token: Token![if] = content.parse()?;
            Some((if_token, Box::new(content.parse()?)))
        } else {
            None
        };
        content.parse::<Token![=>]>()?;
        let target = node_path(&content)?;
        arms.push(ArmDecl { pat, guard, target });
        if content.is_empty() {
            break;
        }
        content.parse::<Token![,]>()?;
    }
    let bound = if input.peek(kw::max) {
        let max: kw::max = input.parse()?;
        let limit: LitInt = input.parse().map_err(|error| {
            syn::Error::new(
                error.span(),
                "expected the loop's bound, a whole number: `max 5 => END`",
            )
        })?;
        input.parse::<Token![=>]>().map_err(|error| {
            syn::Error::new(
                error.span(),
                "expected `=>` and where the run goes when the bound is hit: `max 5 => END`",
            )
        })?;
        let target = node_path(input)?;
        Some(BoundDecl { max, limit, target })
    } else {
        None
    };
    if input.peek(Token![;]) {
        input.parse::<Token![;]>()?;
    }
    Ok(RouteDecl {
        attrs,
        node,
        match_token,
        brace,
        arms,
        bound,
    })
}

impl Parse for ParamDecl {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let name = input.parse()?;
        input.parse::<Token![:]>()?;
        let ty = input.parse()?;
        Ok(Self { name, ty })
    }
}

impl Parse for LetDecl {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        input.parse::<Token![let]>()?;
        let lookahead = input.lookahead1();
        let binding = if lookahead.peek(Token![_]) {
            {
                input.parse::<Token![_]>()?;
                BindingDecl::Discard
            }
        } else if lookahead.peek(Ident) {
            BindingDecl::Name(input.parse()?)
        } else {
            return Err(lookahead.error());
        };
        input.parse::<Token![=]>()?;
        let call = input.parse()?;
        if !input.peek(Token![;]) {
            return Err(input.error("expected `;` after the step call"));
        }
        input.parse::<Token![;]>()?;
        Ok(Self {
            attrs: Vec::new(),
            binding,
            call,
        })
    }
}

impl Parse for CallDecl {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let step = input.call(Path::parse_mod_style).map_err(|error| {
            syn::Error::new(error.span(), "expected a step call, e.g. `research(topic)`")
        })?;
        if !input.peek(token::Paren) {
            return Err(input.error(format!(
                "expected `(` and the arguments of step `{}`",
                path_name(&step)
            )));
        }
        let content;
        parenthesized!(content in input);
        let args = content.parse_terminated(ArgDecl::parse, Token![,])?;
        Ok(Self { step, args })
    }
}

impl Parse for ArgDecl {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let ident: Ident = input.parse().map_err(|error| {
            syn::Error::new(
                error.span(),
                "expected the name of a binding or of a workflow input",
            )
        })?;
        if !input.peek(Token![.]) {
            return Ok(Self { ident, ok: None });
        }
        input.parse::<Token![.]>()?;
        let method: Ident = input.parse()?;
        let content;
        let paren = parenthesized!(content in input);
        if method != "ok" {
            return Err(syn::Error::new(
                method.span(),
                format!(
                    "`.{method}()` is not available here: an argument is a binding as it is, or `{ident}.ok()` to read a node that may be skipped as an `Option`"
                ),
            ));
        }
        if !content.is_empty() {
            return Err(syn::Error::new(
                paren.span.join(),
                "`.ok()` takes no arguments",
            ));
        }
        Ok(Self {
            ident,
            ok: Some(method),
        })
    }
}

impl Parse for OutputDecl {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(Ident) && !input.peek2(token::Paren) && !input.peek2(Token![::]) {
            return Ok(Self::Binding(input.parse()?));
        }
        if input.peek(Ident) || input.peek(Token![::]) {
            return Ok(Self::Call(Vec::new(), input.parse()?));
        }
        Err(input.error(
            "expected the workflow's output: a binding or a step call, e.g. `publish(checked)`",
        ))
    }
}

/// The last segment of a step path: the step's name.
pub(crate) fn path_name(path: &Path) -> String {
    path.segments
        .last()
        .map_or_else(String::new, |segment| segment.ident.to_string())
}
