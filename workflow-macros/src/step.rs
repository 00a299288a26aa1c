//! `#[step]`: checks a step function and emits its companion type.
//!
//! The function itself is emitted unchanged, so it stays callable on its own. Next to it:
//! - a type with the same name (an empty `enum`, which lives only in the type namespace)
//!   implementing `Step`: output type, name, policy;
//! - `<name>::__wf_call`, the uniform entry point `workflow!` calls: the context as
//!   `&Arc<Ctx>`, then every input by reference (owned parameters are cloned);
//! - a compile-time assertion, spanned at the return type, that the output is serializable.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::{FnArg, GenericParam, Item, ItemFn, LitStr, Pat, Path, ReturnType, Type};

use crate::errors::{Errors, option_hint};
use crate::model::is_context_name;
use crate::policy::{PolicyOptions, whole_number};
use crate::tokens::{respan, type_string};

const OPTIONS: [&str; 8] = [
    "retries", "backoff", "jitter", "timeout", "cache", "version", "name", "crate",
];

/// `#[step(...)]` options.
#[derive(Default)]
struct StepOptions {
    policy: PolicyOptions,
    name: Option<String>,
    krate: Option<Path>,
    /// `version = N`.
    version: Option<u32>,
    /// Where `cache` was given, to point at it when the step cannot be cached.
    cache_span: Option<Span>,
}

pub(crate) fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let options = parse_options(args, &mut errors);
    let func = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(func)) => func,
        Ok(other) => {
            let (kind, span) = describe(&other);
            errors.push(syn::Error::new(
                span,
                format!("`#[step]` goes on a function, not on {kind}"),
            ));
            return with_errors(item, errors);
        }
        Err(error) => {
            errors.push(error);
            return with_errors(item, errors);
        }
    };
    match companion(&func, &options, &mut errors) {
        Some(companion) if errors.is_empty() => quote!(#func #companion),
        _ => with_errors(func.into_token_stream(), errors),
    }
}

/// The item unchanged, followed by the errors (so that uses of the function do not add
/// secondary errors).
fn with_errors(item: TokenStream, errors: Errors) -> TokenStream {
    let mut out = item;
    if let Err(error) = errors.finish() {
        out.extend(error.into_compile_error());
    }
    out
}

fn parse_options(args: TokenStream, errors: &mut Errors) -> StepOptions {
    let mut options = StepOptions::default();
    let parser = syn::meta::parser(|meta| {
        let key = meta.path.to_token_stream().to_string();
        let seen = match key.as_str() {
            "name" => options.name.is_some(),
            "crate" => options.krate.is_some(),
            "version" => options.version.is_some(),
            key => {
                let Some(seen) = options.policy.seen(key) else {
                    let hint = option_hint(key, &OPTIONS);
                    return Err(meta.error(format!("unknown option `{key}`{hint}")));
                };
                seen
            }
        };
        if seen {
            return Err(meta.error(format!("duplicate option `{key}`")));
        }
        match key.as_str() {
            "name" => {
                let lit: LitStr = meta.value()?.parse()?;
                if lit.value().trim().is_empty() {
                    return Err(syn::Error::new(
                        lit.span(),
                        "a step's `name` cannot be empty",
                    ));
                }
                options.name = Some(lit.value());
            }
            "crate" => {
                let lit: LitStr = meta.value()?.parse()?;
                options.krate = Some(lit.parse()?);
            }
            "version" => options.version = Some(whole_number(&meta, "version", 2)?),
            key => {
                if key == "cache" {
                    options.cache_span = Some(meta.path.span());
                }
                options.policy.parse(key, &meta)?;
            }
        }
        Ok(())
    });
    if let Err(error) = syn::parse::Parser::parse2(parser, args) {
        errors.push(error);
    }
    options
}

/// What the item is, for the "not a function" error, and the span of its keyword.
fn describe(item: &Item) -> (&'static str, Span) {
    match item {
        Item::Struct(i) => ("a struct", i.struct_token.span),
        Item::Enum(i) => ("an enum", i.enum_token.span),
        Item::Union(i) => ("a union", i.union_token.span),
        Item::Trait(i) => ("a trait", i.trait_token.span),
        Item::Impl(i) => ("an impl block", i.impl_token.span),
        Item::Mod(i) => ("a module", i.mod_token.span),
        Item::Const(i) => ("a constant", i.const_token.span),
        Item::Static(i) => ("a static", i.static_token.span),
        Item::Type(i) => ("a type alias", i.type_token.span),
        Item::Use(i) => ("a `use` declaration", i.use_token.span),
        other => ("this item", other.span()),
    }
}

/// A step's parameter, after the context.
struct Param {
    ty: Type,
    /// The parameter is a shared reference: pass it on; otherwise clone into it.
    by_ref: bool,
}

/// What `signature` reads from a step function.
struct StepSignature {
    ctx_ty: Option<Type>,
    params: Vec<Param>,
    /// For a step of a state graph (`state: &mut State`): the state's type.
    state_ty: Option<Type>,
    output_ty: Type,
    fallible: bool,
    output_span: Span,
    /// For a pause step (`-> Pause<Request, Reply>`): `Request`.
    pause_request: Option<Type>,
}

/// Rejects generic, variadic and `unsafe` steps.
fn check_shape(sig: &syn::Signature, errors: &mut Errors) {
    for param in &sig.generics.params {
        match param {
            GenericParam::Lifetime(_) => {}
            GenericParam::Type(_) | GenericParam::Const(_) => errors.push(syn::Error::new(
                param.span(),
                "steps cannot be generic: a workflow needs one concrete output type per step; write a step per type",
            )),
        }
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new(variadic.span(), "steps cannot be variadic"));
    }
    if let syn::Safety::Unsafe(token) = &sig.safety {
        errors.push(syn::Error::new(
            token.span,
            "steps cannot be `unsafe fn`: wrap the unsafe call in a safe function",
        ));
    }
}

/// Checks a step's signature and reads what the companion needs from it.
fn signature(sig: &syn::Signature, errors: &mut Errors) -> Option<StepSignature> {
    check_shape(sig, errors);
    let mut inputs = sig.inputs.iter().peekable();
    let mut ctx_ty = None;
    if let Some(FnArg::Typed(first)) = inputs.peek()
        && let Pat::Ident(pat) = &*first.pat
        && is_context_name(&pat.ident)
    {
        match &*first.ty {
            Type::Reference(reference) if reference.mutability.is_none() => {
                ctx_ty = Some((*reference.elem).clone());
            }
            other => {
                // `&mut Ctx` becomes `&Ctx`, not `&&mut Ctx`.
                let target = match other {
                    Type::Reference(reference) => &*reference.elem,
                    other => other,
                };
                errors.push(syn::Error::new(
                    other.span(),
                    format!(
                        "the context parameter must be a shared reference: `{}: &{}`",
                        pat.ident,
                        type_string(target)
                    ),
                ));
            }
        }
        inputs.next();
    }
    let mut params = Vec::new();
    let inputs: Vec<&FnArg> = inputs.collect();
    let mut state_ty = None;
    if let [FnArg::Typed(typed)] = inputs.as_slice()
        && let Type::Reference(reference) = &*typed.ty
        && reference.mutability.is_some()
    {
        state_ty = Some((*reference.elem).clone());
    }
    for input in inputs.iter().filter(|_| state_ty.is_none()) {
        match input {
            FnArg::Receiver(receiver) => errors.push(syn::Error::new(
                receiver.self_token.span,
                "`#[step]` goes on a free function, not on a method",
            )),
            FnArg::Typed(typed) => match &*typed.ty {
                Type::Reference(reference) if reference.mutability.is_some() => {
                    errors.push(syn::Error::new(
                        reference.span(),
                        "a step takes `&mut` only for the state of a state graph, as its one input (after `ctx`); a dataflow step's inputs are shared with other steps: take `&T` (or an owned `T: Clone`)",
                    ));
                }
                Type::ImplTrait(_) => errors.push(syn::Error::new(
                    typed.ty.span(),
                    "step inputs must have concrete types, not `impl Trait`",
                )),
                Type::Reference(reference) => params.push(Param {
                    ty: (*reference.elem).clone(),
                    by_ref: true,
                }),
                other => params.push(Param {
                    ty: other.clone(),
                    by_ref: false,
                }),
            },
        }
    }

    let (output_ty, fallible, output_span) = match &sig.output {
        ReturnType::Default => (syn::parse_quote!(()), false, sig.ident.span()),
        ReturnType::Type(_, ty) => {
            if let Type::ImplTrait(_) = &**ty {
                errors.push(syn::Error::new(
                    ty.span(),
                    "a step's output must be a concrete, serializable type, not `impl Trait`",
                ));
                return None;
            }
            match result_ok_type(ty) {
                Some(ok) => (ok.clone(), true, ok.span()),
                None => ((**ty).clone(), false, ty.span()),
            }
        }
    };
    if !errors.is_empty() {
        return None;
    }
    // A pause step's output, as its node sees it, is the reply.
    let (output_ty, output_span, pause_request) = match pause_types(&output_ty) {
        Some((request, reply)) => (reply.clone(), reply.span(), Some(request.clone())),
        None => (output_ty, output_span, None),
    };
    Some(StepSignature {
        ctx_ty,
        params,
        state_ty,
        output_ty,
        fallible,
        output_span,
        pause_request,
    })
}

// One `quote!` per generated item keeps each item readable in one place.
#[allow(clippy::too_many_lines)]
fn companion(func: &ItemFn, options: &StepOptions, errors: &mut Errors) -> Option<TokenStream> {
    let sig = &func.sig;
    let StepSignature {
        ctx_ty,
        params,
        state_ty,
        output_ty,
        fallible,
        output_span,
        pause_request,
    } = signature(sig, errors)?;
    let krate = options
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::workflow));
    let private = quote!(#krate::__private);
    let name = &sig.ident;
    let vis = &func.vis;
    let step_name = options.name.clone().unwrap_or_else(|| name.to_string());
    let output_type_name = type_string(&output_ty);
    let policy = options.policy.tokens(&private, None);
    let lifetimes = sig.generics.params.iter();
    let (ctx_generic, ctx_param_ty, ctx_arg) = match &ctx_ty {
        Some(ty) => (
            quote!(__WfCtx: #private::AsContext<#ty> + ::core::marker::Send + ::core::marker::Sync,),
            quote!(__WfCtx),
            quote!(#private::AsContext::as_context(&**__wf_ctx),),
        ),
        None => (
            quote!(__WfCtx: ?::core::marker::Sized + ::core::marker::Send + ::core::marker::Sync,),
            quote!(__WfCtx),
            quote!(),
        ),
    };
    let param_names: Vec<_> = (0..params.len())
        .map(|i| format_ident!("__wf_a{}", i))
        .collect();
    let param_decls = params.iter().zip(&param_names).map(|(param, name)| {
        let ty = &param.ty;
        quote!(#name: &#ty)
    });
    let call_args = params.iter().zip(&param_names).map(|(param, name)| {
        if param.by_ref {
            quote!(#name)
        } else {
            quote!(::core::clone::Clone::clone(#name))
        }
    });
    let awaited = sig.asyncness.map(|_| quote!(.await));
    let ignore_ctx = ctx_ty.is_none().then(|| quote!(let _ = __wf_ctx;));
    let mut wrap = if fallible {
        quote!(#private::fallible(__wf_out))
    } else {
        quote!(::core::result::Result::Ok(__wf_out))
    };
    let pause = pause_request.is_some();
    if let (true, Some(span)) = (pause, options.cache_span) {
        errors.push(syn::Error::new(
            span,
            "a pause step cannot be cached: its output is the answer to its request, which comes from outside; remove `cache`",
        ));
        return None;
    }
    let version = options.version.unwrap_or(1);
    let fn_name = name.to_string();
    if let Some(request) = &pause_request {
        // The step only makes the request: its node stops here, and the answer arrives as
        // its output later.
        wrap = quote! {
            match #wrap {
                ::core::result::Result::Ok(__wf_pause) => ::core::result::Result::Err(
                    #private::Pause::<#request, #output_ty>::into_step_error(__wf_pause),
                ),
                ::core::result::Result::Err(__wf_error) => ::core::result::Result::Err(__wf_error),
            }
        };
    }
    let answer_fn = match (&pause_request, &state_ty) {
        (Some(_), Some(state_ty)) => Some(quote! {
            fn answer(
                __wf_state: &mut #state_ty,
                __wf_answer: #private::JsonValue,
            ) -> ::core::result::Result<#output_ty, #private::StepError> {
                #private::apply_answer::<#state_ty, #output_ty>(__wf_state, __wf_answer)
            }
        }),
        _ => None,
    };
    let assert_output = {
        // A state step's return value is only matched on; its state is what is kept
        // (and a pause's answer, which is stored).
        let (ty, span, check) = match &state_ty {
            Some(state) if !pause => (state, state.span(), quote!(#private::assert_step_state)),
            _ => (
                &output_ty,
                output_span,
                quote!(#private::assert_step_output),
            ),
        };
        let ty = respan(ty.to_token_stream(), span);
        let check = respan(check, span);
        quote_spanned! {span=>
            const _: () = #check::<#ty>();
        }
    };
    let doc = format!(
        " The step `{step_name}`, generated by `#[step]`: wire the function `{name}` into a `workflow!` by name."
    );
    let entry = if let Some(state_ty) = &state_ty {
        quote! {
            impl<#ctx_generic> #private::StateStep<__WfCtx, #state_ty> for #name {
                type Value = #output_ty;

                #[allow(clippy::needless_lifetimes)]
                fn call<'__wf_a>(
                    __wf_ctx: &'__wf_a #private::ArcPtr<__WfCtx>,
                    __wf_state: &'__wf_a mut #state_ty,
                ) -> impl ::core::future::Future<
                    Output = ::core::result::Result<#output_ty, #private::StepError>,
                > + ::core::marker::Send + '__wf_a {
                    async move {
                        #ignore_ctx
                        let __wf_out = #name(#ctx_arg __wf_state) #awaited;
                        #wrap
                    }
                }

                #answer_fn
            }
        }
    } else {
        quote! {
            impl #name {
                #[doc(hidden)]
                #[allow(clippy::ptr_arg, clippy::needless_lifetimes, clippy::trivially_copy_pass_by_ref, clippy::ref_option_ref)]
                #vis async fn __wf_call<#(#lifetimes,)* #ctx_generic>(
                    __wf_ctx: &#private::ArcPtr<#ctx_param_ty>,
                    #(#param_decls),*
                ) -> ::core::result::Result<#output_ty, #private::StepError> {
                    #ignore_ctx
                    let __wf_out = #name(#ctx_arg #(#call_args),*) #awaited;
                    #wrap
                }
            }
        }
    };
    Some(quote! {
        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #vis enum #name {}

        impl #private::Step for #name {
            type Output = #output_ty;
            const NAME: &'static str = #step_name;
            const OUTPUT_TYPE: &'static str = #output_type_name;
            const POLICY: #private::Policy = #policy;
            const PAUSE: bool = #pause;
            const ID: &'static str = ::core::concat!(::core::module_path!(), "::", #fn_name);
            const VERSION: u32 = #version;
        }

        #entry

        #assert_output
    })
}

/// `Request` and `Reply` in `Pause<Request, Reply>` (any path ending in `Pause<_, _>`).
fn pause_types(ty: &Type) -> Option<(&Type, &Type)> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Pause" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|arg| match arg {
        syn::GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(request), Some(reply), None) => Some((request, reply)),
        _ => None,
    }
}

/// `T` in `Result<T, E>` (or any path ending in `Result<T, ...>`, such as `io::Result<T>`).
fn result_ok_type(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    args.args.iter().find_map(|arg| match arg {
        syn::GenericArgument::Type(ty) => Some(ty),
        _ => None,
    })
}
