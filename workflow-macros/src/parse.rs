//! The surface syntax of `workflow!`, parsed into a tree that keeps every token (and so every
//! span) the user wrote.
//!
//! ```text
//! workflow! {
//!     #[attributes]*                       // doc comments, #[workflow(crate = "path")]
//!     VIS NAME ( [ctx: CTX,] (INPUT: TYPE),* ) -> OUTPUT {
//!         (let BINDING = STEP_PATH(ARG, ...);)*   // BINDING is a name or `_`
//!         STEP_PATH(ARG, ...) | BINDING           // the output, without `;`
//!     }
//! }
//! ```
//!
//! Parsing checks only the shape; names are resolved by `model`.

use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Attribute, Ident, Path, Token, Type, Visibility, braced, parenthesized, token};

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

/// `let binding = step(args);`
pub(crate) struct LetDecl {
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
    pub(crate) args: Punctuated<Ident, Token![,]>,
}

/// The workflow's final expression.
pub(crate) enum OutputDecl {
    /// A step call whose output is the workflow's.
    Call(CallDecl),
    /// A binding whose value is the workflow's output.
    Binding(Ident),
}

impl Parse for WorkflowInput {
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
        let mut lets = Vec::new();
        let mut output = None;
        while !body.is_empty() {
            if body.peek(Token![let]) {
                lets.push(body.parse()?);
                continue;
            }
            output = Some(body.parse()?);
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
        if !input.is_empty() {
            return Err(input.error("expected one workflow per `workflow!` invocation"));
        }
        Ok(Self {
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
    }
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
        Ok(Self { binding, call })
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
        let args = content.parse_terminated(
            |arg| {
                arg.parse::<Ident>().map_err(|error| {
                    syn::Error::new(
                        error.span(),
                        "expected the name of a binding or of a workflow input",
                    )
                })
            },
            Token![,],
        )?;
        Ok(Self { step, args })
    }
}

impl Parse for OutputDecl {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(Ident) && !input.peek2(token::Paren) && !input.peek2(Token![::]) {
            return Ok(Self::Binding(input.parse()?));
        }
        if input.peek(Ident) || input.peek(Token![::]) {
            return Ok(Self::Call(input.parse()?));
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
