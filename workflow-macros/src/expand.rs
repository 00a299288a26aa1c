//! Code generation for `workflow!`. `executor` only ever sees a graph that `Graph::build`
//! resolved and `validate::check` accepted; on errors, `stub` still defines the workflow
//! type, so code that names it adds no secondary errors.
//!
//! What is generated, inside `const _: () = { ... };` except the type itself:
//! - the workflow type (holding the shared context and run options) and its inherent
//!   methods: `new`, `with_context`, `with_options`, `run`, `start`, `graph`;
//! - `__wf_Run`, the state of one run: the context, the inputs, one slot per node;
//! - a `static` `Graph` describing nodes, edges and policies;
//! - `Compiled::node`, one `match` arm per node calling the step with its inputs. Each
//!   argument is spanned at the user's argument, so a type mismatch is rustc's own error at
//!   that token;
//! - `__wf_uses`, a never-called function that mirrors the bindings as local variables, so
//!   that an unused node output is rustc's own `unused_variables` warning at the binding.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned as _;

use crate::errors::Errors;
use crate::model::{Arg, Graph, NodeId, OnFailure, Source};
use crate::parse::Decl;
use crate::tokens::{at, respan, type_string};
use crate::{state, validate};

/// `workflow!`: parse, build the graph, check it, expand it.
pub(crate) fn workflow(input: TokenStream) -> TokenStream {
    let input = match syn::parse2(input) {
        Ok(Decl::Dataflow(input)) => input,
        Ok(Decl::State(input)) => return state::workflow(input),
        Err(error) => return error.into_compile_error(),
    };
    let mut errors = Errors::default();
    let graph = Graph::build(input, &mut errors);
    if errors.is_empty() {
        validate::check(&graph, &mut errors);
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

/// What the workflow type is declared with.
pub(crate) struct Header<'a> {
    pub(crate) attrs: &'a [syn::Attribute],
    pub(crate) vis: &'a syn::Visibility,
    pub(crate) name: &'a syn::Ident,
    pub(crate) has_ctx: bool,
}

impl<'a> Header<'a> {
    fn of(graph: &'a Graph) -> Self {
        Self {
            attrs: &graph.attrs,
            vis: &graph.vis,
            name: &graph.name,
            has_ctx: graph.ctx.is_some(),
        }
    }
}

/// The types a workflow's public surface is made of.
pub(crate) struct Surface {
    pub(crate) private: TokenStream,
    pub(crate) ctx_ty: TokenStream,
    pub(crate) input_ty: TokenStream,
    pub(crate) output_ty: TokenStream,
}

impl Surface {
    fn of(graph: &Graph) -> Self {
        let krate = &graph.krate;
        let ctx_ty = graph
            .ctx
            .as_ref()
            .map_or_else(|| quote!(()), |(_, ty)| ty.to_token_stream());
        let input_ty = match graph.inputs.as_slice() {
            [] => quote!(()),
            [input] => input.ty.to_token_stream(),
            inputs => {
                let types = inputs.iter().map(|input| &input.ty);
                quote!((#(#types,)*))
            }
        };
        let output_ty = graph
            .output_ty
            .as_ref()
            .map_or_else(|| quote!(()), ToTokens::to_token_stream);
        Self {
            private: quote!(#krate::__private),
            ctx_ty,
            input_ty,
            output_ty,
        }
    }
}

/// The workflow type, and its impls (to place in a `const _` block); `bodies` gives the
/// bodies of `run`, `start` and `graph` (the real ones, or stand-ins when the workflow has
/// errors).
pub(crate) fn workflow_type(
    header: &Header<'_>,
    surface: &Surface,
    bodies: [TokenStream; 3],
) -> (TokenStream, TokenStream) {
    let Surface {
        private,
        ctx_ty,
        input_ty,
        output_ty,
    } = surface;
    let [run_body, start_body, graph_body] = bodies;
    let Header {
        attrs,
        vis,
        name,
        has_ctx,
    } = header;
    let constructor = if *has_ctx {
        quote! {
            /// Creates the workflow with its context, which every run shares and every step
            /// may borrow.
            pub fn new(ctx: #ctx_ty) -> Self {
                Self::with_context(#private::ArcPtr::new(ctx))
            }
        }
    } else {
        quote! {
            /// Creates the workflow.
            pub fn new() -> Self {
                Self::with_context(#private::ArcPtr::new(()))
            }
        }
    };
    let default_impl = (!has_ctx).then(|| {
        quote! {
            impl ::core::default::Default for #name {
                fn default() -> Self {
                    Self::new()
                }
            }
        }
    });
    let ty = quote! {
        #(#attrs)*
        #vis struct #name {
            __wf_ctx: #private::ArcPtr<#ctx_ty>,
            __wf_options: #private::RunOptions,
        }
    };
    let impls = quote! {
            impl #name {
                #constructor

                /// Creates the workflow around a context that is already shared.
                pub fn with_context(ctx: #private::ArcPtr<#ctx_ty>) -> Self {
                    Self {
                        __wf_ctx: ctx,
                        __wf_options: #private::RunOptions::new(),
                    }
                }

                /// Sets the options (concurrency limit, parallelism) of the runs this value
                /// starts.
                #[must_use]
                pub fn with_options(mut self, options: #private::RunOptions) -> Self {
                    self.__wf_options = options;
                    self
                }

                /// Runs the workflow to completion in the calling task and returns its
                /// output. The future owns what it needs, so it can be spawned or stored.
                ///
                /// # Errors
                ///
                /// When a step fails for good: the error names the node and carries the
                /// step's error; the steps still running are cancelled first.
                pub fn run(
                    &self,
                    input: #input_ty,
                ) -> impl ::core::future::Future<
                    Output = ::core::result::Result<#output_ty, #private::RunError>,
                > + ::core::marker::Send + use<> {
                    #run_body
                }

                /// Starts a run in a new tokio task. The handle streams the run's events,
                /// cancels it, or awaits its output.
                ///
                /// # Panics
                ///
                /// When called outside a tokio runtime.
                pub fn start(&self, input: #input_ty) -> #private::RunHandle<#output_ty> {
                    #start_body
                }

                /// The static description of this workflow: nodes, edges and policies,
                /// renderable as Mermaid or Graphviz DOT.
                pub fn graph() -> &'static #private::Graph {
                    #graph_body
                }
            }

            impl ::core::clone::Clone for #name {
                fn clone(&self) -> Self {
                    Self {
                        __wf_ctx: #private::ArcPtr::clone(&self.__wf_ctx),
                        __wf_options: ::core::clone::Clone::clone(&self.__wf_options),
                    }
                }
            }

            impl ::core::fmt::Debug for #name {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.debug_struct(::core::stringify!(#name)).finish_non_exhaustive()
                }
            }

            #default_impl
    };
    (ty, impls)
}

/// `impl Workflow`, for either shape: the types come from `surface` (a state graph's input
/// and output are both its state), the graph is the `__WF_GRAPH` static.
pub(crate) fn workflow_impl(name: &syn::Ident, surface: &Surface) -> TokenStream {
    let Surface {
        private,
        ctx_ty,
        input_ty,
        output_ty,
    } = surface;
    quote! {
        impl #private::Workflow for #name {
            type Context = #ctx_ty;
            type Input = #input_ty;
            type Output = #output_ty;

            fn graph() -> &'static #private::Graph {
                &__WF_GRAPH
            }

            fn context(&self) -> &#private::ArcPtr<#ctx_ty> {
                &self.__wf_ctx
            }

            fn options(&self) -> &#private::RunOptions {
                &self.__wf_options
            }
        }
    }
}

/// `impl Persist`: the workflow's input and output to and from JSON (checked only where
/// the workflow runs with a store, through the `__X` parameter), and its durable
/// scheduler, `drive`.
pub(crate) fn persist_impl(
    name: &syn::Ident,
    surface: &Surface,
    [drive, answer]: [&TokenStream; 2],
    work: Option<&TokenStream>,
) -> TokenStream {
    let Surface {
        private,
        ctx_ty,
        input_ty,
        output_ty,
    } = surface;
    // A state graph's output is its input, the state: one bound.
    let output_bound = (input_ty.to_string() != output_ty.to_string())
        .then(|| quote!(#output_ty: #private::Stored<__X>,));
    let work = work.map(|work| {
        quote! {
            fn work(
                ctx: #private::ArcPtr<#ctx_ty>,
                options: #private::RunOptions,
                task: #private::WorkTask,
            ) -> #private::WorkFuture {
                #work
            }
        }
    });
    quote! {
        impl<__X: ?::core::marker::Sized> #private::Persist<__X> for #name
        where
            #input_ty: #private::Stored<__X>,
            #output_bound
        {
            fn save_input(
                input: &#input_ty,
            ) -> ::core::result::Result<#private::JsonValue, #private::StepError> {
                <#input_ty as #private::Stored<__X>>::to_stored(input)
            }

            fn load_input(
                value: #private::JsonValue,
            ) -> ::core::result::Result<#input_ty, #private::StepError> {
                <#input_ty as #private::Stored<__X>>::from_stored(value)
            }

            fn save_output(
                output: &#output_ty,
            ) -> ::core::result::Result<#private::JsonValue, #private::StepError> {
                <#output_ty as #private::Stored<__X>>::to_stored(output)
            }

            fn load_output(
                value: #private::JsonValue,
            ) -> ::core::result::Result<#output_ty, #private::StepError> {
                <#output_ty as #private::Stored<__X>>::from_stored(value)
            }

            fn drive(
                ctx: #private::ArcPtr<#ctx_ty>,
                options: #private::RunOptions,
                run: #private::DurableRun<#input_ty>,
            ) -> #private::DriveFuture<#output_ty> {
                #drive
            }

            fn answer(
                args: #private::AnswerArgs<#ctx_ty, #input_ty>,
            ) -> #private::AnswerFuture {
                #answer
            }

            #work
        }
    }
}

/// The workflow type alone, for a workflow with errors: its methods never run, because the
/// errors stop the build.
pub(crate) fn stub(graph: &Graph) -> TokenStream {
    stub_type(&Header::of(graph), &Surface::of(graph))
}

/// The workflow type with stand-in bodies, for either shape.
pub(crate) fn stub_type(header: &Header<'_>, surface: &Surface) -> TokenStream {
    let unreachable = quote!(::core::panic!("this workflow failed to compile"));
    let (ty, impls) = workflow_type(
        header,
        surface,
        [
            quote!(async { #unreachable }),
            unreachable.clone(),
            unreachable,
        ],
    );
    quote! {
        #ty
        const _: () = {
            #impls
        };
    }
}

/// The full expansion of a valid workflow.
pub(crate) fn executor(graph: &Graph) -> TokenStream {
    let surface = Surface::of(graph);
    let Surface {
        private,
        ctx_ty,
        input_ty,
        output_ty,
    } = &surface;
    let name = &graph.name;

    let (ty, impls) = workflow_type(
        &Header::of(graph),
        &surface,
        [
            quote!(#private::run::<Self>(&self.__wf_ctx, &self.__wf_options, input)),
            quote!(#private::start::<Self>(&self.__wf_ctx, &self.__wf_options, input)),
            quote!(&__WF_GRAPH),
        ],
    );

    let (aliases, alias_decls) = step_aliases(graph.nodes.iter().map(|node| &node.step));
    let input_fields: Vec<_> = (0..graph.inputs.len())
        .map(|i| format_ident!("__wf_in{}", i))
        .collect();
    let node_fields: Vec<_> = (0..graph.nodes.len())
        .map(|i| format_ident!("__wf_n{}", i))
        .collect();

    let new_run_body = match input_fields.as_slice() {
        [] => quote! {
            let () = input;
        },
        [field] => quote! {
            let #field = input;
        },
        fields => quote! {
            let (#(#fields,)*) = input;
        },
    };

    let graph_static = graph_static(graph, &aliases, private);

    let node_functions = node_functions(graph, &aliases, &input_fields, &node_fields, private);
    let (fallback_dispatch, fallback_functions) =
        fallbacks(graph, &aliases, &input_fields, &node_fields, private);
    let node_names = (0..graph.nodes.len()).map(|i| format_ident!("__wf_node{}", i));

    let output_fn = output_fn(graph, &input_fields, &node_fields, private, output_ty);
    let uses = uses_check(graph);
    let input_types: Vec<_> = graph.inputs.iter().map(|input| &input.ty).collect();
    let as_step = dataflow_as_step(&Header::of(graph), &surface, &input_types);
    let workflow_impl = workflow_impl(name, &surface);
    let persist = persist_dataflow(name, &surface, &node_fields);

    quote! {
        #ty

        const _: () = {
            #impls

            #(#alias_decls)*

            #[doc(hidden)]
            pub struct __wf_Run {
                __wf_ctx: #private::ArcPtr<#ctx_ty>,
                #(#input_fields: #input_types,)*
                #(#node_fields: #private::Slot<<#aliases as #private::Step>::Output>,)*
            }

            #graph_static

            #workflow_impl

            impl #private::Compiled for #name {
                type Run = __wf_Run;

                fn new_run(ctx: #private::ArcPtr<#ctx_ty>, input: #input_ty) -> __wf_Run {
                    #new_run_body
                    __wf_Run {
                        __wf_ctx: ctx,
                        #(#input_fields,)*
                        #(#node_fields: #private::Slot::new(),)*
                    }
                }

                fn node(
                    run: &#private::ArcPtr<__wf_Run>,
                    node: #private::NodeId,
                ) -> #private::NodeFuture<'_> {
                    const NODES: &[fn(&#private::ArcPtr<__wf_Run>) -> #private::NodeFuture<'_>] =
                        &[#(#node_names),*];
                    match NODES.get(node.0) {
                        ::core::option::Option::Some(attempt) => attempt(run),
                        ::core::option::Option::None => ::std::boxed::Box::pin(async {
                            ::core::result::Result::Err(#private::StepError::msg(
                                "internal error: no such node",
                            ))
                        }),
                    }
                }

                #output_fn

                #fallback_dispatch
            }

            #persist

            #as_step

            #(#node_functions)*

            #(#fallback_functions)*

            #uses
        };
    }
}

/// `impl Persist` and `impl PersistNodes` of a dataflow workflow: its values and each
/// node's slot to and from JSON, for checkpoints.
fn persist_dataflow(
    name: &syn::Ident,
    surface: &Surface,
    node_fields: &[syn::Ident],
) -> TokenStream {
    let private = &surface.private;
    let persist = persist_impl(
        name,
        surface,
        [
            &quote!(#private::drive_dataflow::<Self>(
                ctx,
                options,
                run,
                <Self as #private::Persist<__X>>::save_output,
            )),
            &quote!(#private::answer_dataflow::<Self>(args)),
        ],
        Some(&quote!(#private::work_dataflow::<Self>(
            ctx,
            options,
            task,
            (
                <Self as #private::Persist<__X>>::load_input,
                <Self as #private::Persist<__X>>::save_output,
            ),
        ))),
    );
    let node_indices = 0..node_fields.len();
    let node_indices2 = 0..node_fields.len();
    quote! {
        #persist

            impl #private::PersistNodes for #name {
                fn save_node(
                    run: &__wf_Run,
                    node: #private::NodeId,
                ) -> ::core::result::Result<#private::JsonValue, #private::StepError> {
                    match node.0 {
                        #(#node_indices => #private::save(&run.#node_fields),)*
                        _ => ::core::result::Result::Err(#private::StepError::msg(
                            "internal error: no such node",
                        )),
                    }
                }

                fn restore_node(
                    run: &__wf_Run,
                    node: #private::NodeId,
                    value: #private::JsonValue,
                ) -> ::core::result::Result<(), #private::StepError> {
                    match node.0 {
                        #(#node_indices2 => #private::restore(&run.#node_fields, value),)*
                        _ => ::core::result::Result::Err(#private::StepError::msg(
                            "internal error: no such node",
                        )),
                    }
                }
            }
    }
}

/// `Compiled::output`: takes the output from a finished run, checked against `-> Type`.
fn output_fn(
    graph: &Graph,
    input_fields: &[syn::Ident],
    node_fields: &[syn::Ident],
    private: &TokenStream,
    output_ty: &TokenStream,
) -> Option<TokenStream> {
    graph.output.as_ref().map(|output| {
        let (run, value) = match output.source {
            Source::Input(index) => {
                let field = &input_fields[index];
                (quote!(run), quote!(run.#field))
            }
            Source::Node(node) => {
                let field = &node_fields[node.0];
                // `take`, not a move out of the run: a partial move would drop each
                // other slot on its own, a line of code per node.
                (quote!(mut run), quote!(run.#field.take()?))
            }
        };
        // A mismatch is reported at the last expression, by `IsOutput`'s message.
        let convert = respan(
            quote!(#private::output::<#output_ty, _>(__wf_value)),
            at(output.span),
        );
        quote! {
            fn output(#run: __wf_Run) -> ::core::option::Option<#output_ty> {
                let __wf_value = #value;
                ::core::option::Option::Some(#convert)
            }
        }
    })
}

/// One function per node: one attempt of the node, reading its inputs from the run and
/// filling its slot. Arguments carry the user's spans, so a type mismatch is reported at
/// the argument. (Separate functions, dispatched through a table, keep the optimizer's work
/// linear in the number of nodes; one `match` with an async block per arm does not.)
///
/// A node function only reads the inputs and calls the step's `__wf_call`, whose future
/// `__private::node` awaits: that async state machine is generic over the step's future
/// alone, so every node of one step shares it, and a node costs the build a plain function
/// of a few lines (measured on 1,000 nodes: see `BENCHMARKS.md`). A node with an `.ok()`
/// argument lends the step a local (`Option<&T>`), which must live in the node's future:
/// it keeps an async block of its own.
fn node_functions(
    graph: &Graph,
    aliases: &[syn::Ident],
    input_fields: &[syn::Ident],
    node_fields: &[syn::Ident],
    private: &TokenStream,
) -> Vec<TokenStream> {
    graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let step_span = at(node.step.span());
            let alias = respan(aliases[i].to_token_stream(), step_span);
            let ctx_arg = respan(quote!(&__wf_run.__wf_ctx), step_span);
            let field = &node_fields[i];
            let function = format_ident!("__wf_node{}", i);
            let CallArgs {
                reads,
                locals,
                passed,
            } = call_args(&node.args, input_fields, node_fields, private);
            let body = if locals.is_empty() {
                // Spanned at the step, like the call: a context the step cannot borrow
                // makes `__wf_call`'s future an error type, and `node`'s bounds on it would
                // repeat that error at the whole `workflow!`.
                let node_fn = respan(quote!(#private::node), step_span);
                quote_spanned! {step_span=>
                    #node_fn(#alias::__wf_call(#ctx_arg, #(#passed),*), &__wf_run.#field)
                }
            } else {
                let call = quote_spanned! {step_span=>
                    #alias::__wf_call(#ctx_arg, #(#passed),*).await?
                };
                quote! {
                    ::std::boxed::Box::pin(async move {
                        #(#locals)*
                        let __wf_value = #call;
                        #private::fill(&__wf_run.#field, __wf_value);
                        ::core::result::Result::Ok(())
                    })
                }
            };
            quote! {
                fn #function(run: &#private::ArcPtr<__wf_Run>) -> #private::NodeFuture<'_> {
                    let __wf_run = run;
                    #(#reads)*
                    #body
                }
            }
        })
        .collect()
}

/// How a node function reads its arguments from the run.
struct CallArgs {
    /// Statements that read node outputs into locals, before the node's future is made: a
    /// missing input (which the scheduler rules out) returns `missing_input`'s error.
    reads: Vec<TokenStream>,
    /// Statements that read `.ok()` arguments (`Option`s the step borrows), inside the
    /// node's future, where they live as long as the step's call.
    locals: Vec<TokenStream>,
    /// The expressions passed to the step, each spanned at its argument so that a type
    /// mismatch is reported there.
    passed: Vec<TokenStream>,
}

/// How a node function reads `args` from the run.
fn call_args(
    args: &[Arg],
    input_fields: &[syn::Ident],
    node_fields: &[syn::Ident],
    private: &TokenStream,
) -> CallArgs {
    let mut reads = Vec::new();
    let mut locals = Vec::new();
    let passed = args
        .iter()
        .enumerate()
        .map(|(k, arg)| {
            let local = format_ident!("__wf_a{}", k);
            let span = arg.ident.span();
            let passed = match (arg.source, &arg.ok) {
                (Some(Source::Input(index)), _) => {
                    let field = &input_fields[index];
                    quote!(&__wf_run.#field)
                }
                (Some(Source::Node(dep)), None) => {
                    let field = &node_fields[dep.0];
                    reads.push(quote! {
                        let ::core::option::Option::Some(#local) =
                            #private::get(&__wf_run.#field)
                        else {
                            return #private::missing_input();
                        };
                    });
                    quote!(#local)
                }
                (Some(Source::Node(dep)), Some(_)) => {
                    let field = &node_fields[dep.0];
                    let read = respan(quote!(#private::maybe(&__wf_run.#field)), at(span));
                    locals.push(quote!(let #local = #read;));
                    quote!(&#local)
                }
                (None, _) => quote!(::core::unreachable!()),
            };
            respan(passed, span)
        })
        .collect();
    CallArgs {
        reads,
        locals,
        passed,
    }
}

/// The alias of node `index`'s fallback step.
fn fallback_alias(index: usize) -> syn::Ident {
    format_ident!("__wf_F{}", index)
}

/// `Compiled::fallback`, and for each node with a fallback a function filling the node's
/// slot with its fallback value or its fallback step's output (and the fallback step's
/// alias); nothing when no node has one.
fn fallbacks(
    graph: &Graph,
    aliases: &[syn::Ident],
    input_fields: &[syn::Ident],
    node_fields: &[syn::Ident],
    private: &TokenStream,
) -> (TokenStream, Vec<TokenStream>) {
    let mut arms = Vec::new();
    let mut functions = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        if let OnFailure::Step(fallback) = &node.on_failure {
            let alias = fallback_alias(i);
            let path = &fallback.step;
            functions.push(quote!(type #alias = #path;));
        }
        let alias = &aliases[i];
        let (reads, value) = match &node.on_failure {
            OnFailure::Value(expr) => {
                let check = respan(
                    quote!(#private::fallback::<<#alias as #private::Step>::Output, _>),
                    expr.span(),
                );
                (Vec::new(), quote!(#check(#expr)))
            }
            OnFailure::Step(fallback) => {
                let span = at(fallback.step.span());
                let alias = respan(fallback_alias(i).to_token_stream(), span);
                let ctx_arg = respan(quote!(&__wf_run.__wf_ctx), span);
                let CallArgs {
                    reads,
                    locals,
                    passed,
                } = call_args(&fallback.args, input_fields, node_fields, private);
                let output = &aliases[i];
                let check = respan(
                    quote!(#private::fallback::<<#output as #private::Step>::Output, _>),
                    span,
                );
                let value = quote_spanned!(span=> {
                    #(#locals)*
                    #check(#alias::__wf_call(#ctx_arg, #(#passed),*).await?)
                });
                (reads, value)
            }
            OnFailure::Fail | OnFailure::Skip => continue,
        };
        let field = &node_fields[i];
        let function = format_ident!("__wf_fallback{}", i);
        functions.push(quote! {
            fn #function(run: &#private::ArcPtr<__wf_Run>) -> #private::NodeFuture<'_> {
                let __wf_run = run;
                #(#reads)*
                ::std::boxed::Box::pin(async move {
                    let __wf_value = #value;
                    #private::fill(&__wf_run.#field, __wf_value);
                    ::core::result::Result::Ok(())
                })
            }
        });
        arms.push(quote!(#i => #function(run),));
    }
    if arms.is_empty() {
        return (TokenStream::new(), functions);
    }
    let dispatch = quote! {
        fn fallback(
            run: &#private::ArcPtr<__wf_Run>,
            node: #private::NodeId,
        ) -> #private::NodeFuture<'_> {
            match node.0 {
                #(#arms)*
                _ => ::std::boxed::Box::pin(async {
                    ::core::result::Result::Err(#private::StepError::msg(
                        "internal error: this node has no fallback",
                    ))
                }),
            }
        }
    };
    (dispatch, functions)
}

fn graph_static(graph: &Graph, aliases: &[syn::Ident], private: &TokenStream) -> TokenStream {
    let name = graph.name.to_string();
    let doc = doc_string(&graph.attrs);
    let inputs = graph.inputs.iter().map(|input| {
        let name = input.name.to_string();
        let ty = type_string(&input.ty);
        quote!(#private::InputDef { name: #name, ty: #ty })
    });
    let source = |source: Source| match source {
        Source::Input(i) => quote!(#private::Source::Input(#i)),
        Source::Node(n) => {
            let n = n.0;
            quote!(#private::Source::Node(#private::NodeId(#n)))
        }
    };
    let nodes = graph.nodes.iter().enumerate().map(|(i, node)| {
        let name = &node.name;
        let alias = &aliases[i];
        let sources = node.args.iter().filter_map(|arg| arg.source).map(source);
        let deps = node.deps.iter().map(|d| d.0);
        let dependents = node.dependents.iter().map(|d| d.0);
        // Deps read only with `.ok()`: the node runs when they were skipped.
        let optional = node.deps.iter().map(|d| d.0).filter(|&dep| {
            node.args
                .iter()
                .chain(node.on_failure.args())
                .filter(|arg| arg.source == Some(Source::Node(NodeId(dep))))
                .all(|arg| arg.ok.is_some())
        });
        let policy = (!node.policy.is_empty()).then(|| {
            node.policy
                .tokens(private, Some(quote!(<#alias as #private::Step>::POLICY)))
        });
        let on_failure = match &node.on_failure {
            OnFailure::Fail => None,
            OnFailure::Skip => Some(quote!(#private::OnFailure::Skip)),
            OnFailure::Value(_) => Some(quote!(#private::OnFailure::FallbackValue)),
            OnFailure::Step(_) => {
                let fallback = fallback_alias(i);
                Some(quote!(#private::OnFailure::FallbackStep {
                    step: <#fallback as #private::Step>::NAME,
                    policy: <#fallback as #private::Step>::POLICY,
                }))
            }
        };
        node_def(
            private,
            name,
            alias,
            NodeWiring {
                inputs: quote!(#(#sources),*),
                deps: quote!(#(#private::NodeId(#deps)),*),
                dependents: quote!(#(#private::NodeId(#dependents)),*),
                optional: quote!(#(#private::NodeId(#optional)),*),
                policy,
                on_failure,
            },
        )
    });
    let output = graph.output.as_ref().map_or_else(
        || quote!(#private::Source::Input(0)),
        |output| source(output.source),
    );
    let output_type = graph
        .output_ty
        .as_ref()
        .map_or_else(|| "()".to_owned(), type_string);
    let count = graph.nodes.len();
    quote! {
        static __WF_COSTS: [#private::NodeCost; #count] =
            [const { #private::NodeCost::new() }; #count];
        static __WF_GRAPH: #private::Graph = #private::Graph {
            name: #name,
            doc: #doc,
            inputs: &[#(#inputs),*],
            nodes: &[#(#nodes),*],
            output: #output,
            output_type: #output_type,
            shape: #private::Shape::Dataflow,
            costs: &__WF_COSTS,
        };
    }
}

/// One alias per node (`type __wf_S{i} = path;`): the step path appears once, so an
/// unknown step is one error.
pub(crate) fn step_aliases<'a>(
    paths: impl Iterator<Item = &'a syn::Path>,
) -> (Vec<syn::Ident>, Vec<TokenStream>) {
    paths
        .enumerate()
        .map(|(i, path)| {
            let alias = format_ident!("__wf_S{}", i);
            let decl = quote!(type #alias = #path;);
            (alias, decl)
        })
        .unzip()
}

/// How a node is wired and what overrides its step's policy; all empty for a node of a
/// state graph (its transitions live in the graph's shape).
#[derive(Default)]
pub(crate) struct NodeWiring {
    /// The contents of `inputs`, `deps`, `dependents` and `optional`.
    pub(crate) inputs: TokenStream,
    pub(crate) deps: TokenStream,
    pub(crate) dependents: TokenStream,
    pub(crate) optional: TokenStream,
    /// The node's policy, when `#[node(...)]` overrides its step's.
    pub(crate) policy: Option<TokenStream>,
    /// The node's `OnFailure`, when not the default.
    pub(crate) on_failure: Option<TokenStream>,
}

/// A node's `NodeDef`; the step's name, output type, policy and subgraph come from its
/// companion type.
pub(crate) fn node_def(
    private: &TokenStream,
    name: &str,
    alias: &syn::Ident,
    wiring: NodeWiring,
) -> TokenStream {
    let NodeWiring {
        inputs,
        deps,
        dependents,
        optional,
        policy,
        on_failure,
    } = wiring;
    let policy = policy.unwrap_or_else(|| quote!(<#alias as #private::Step>::POLICY));
    let on_failure = on_failure.unwrap_or_else(|| quote!(#private::OnFailure::Fail));
    quote! {
        #private::NodeDef {
            name: #name,
            step: <#alias as #private::Step>::NAME,
            output_type: <#alias as #private::Step>::OUTPUT_TYPE,
            inputs: &[#inputs],
            deps: &[#deps],
            dependents: &[#dependents],
            policy: #policy,
            on_failure: #on_failure,
            optional: &[#optional],
            subgraph: <#alias as #private::Step>::SUBGRAPH,
            pause: <#alias as #private::Step>::PAUSE,
            step_id: <#alias as #private::Step>::ID,
            version: <#alias as #private::Step>::VERSION,
        }
    }
}

/// The workflow's doc comment, lines trimmed of the one leading space rustdoc adds.
pub(crate) fn doc_string(attrs: &[syn::Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .filter_map(|attr| match &attr.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .map(|line| line.strip_prefix(' ').unwrap_or(&line).to_owned())
        .collect();
    lines.join("\n")
}

/// A never-called function with one local per input and named binding, and one use per
/// argument: rustc then warns about an unused output exactly as about an unused variable,
/// at the binding, with its usual "prefix it with an underscore" help.
fn uses_check(graph: &Graph) -> TokenStream {
    let private = {
        let krate = &graph.krate;
        quote!(#krate::__private)
    };
    let lints = graph.attrs.iter().filter(|attr| {
        ["allow", "warn", "deny", "forbid", "expect"]
            .iter()
            .any(|lint| attr.path().is_ident(lint))
    });
    let declared = graph
        .inputs
        .iter()
        .map(|input| &input.name)
        .chain(graph.nodes.iter().filter_map(|node| node.binding.as_ref()))
        .filter(|ident| !ident.to_string().starts_with('_'))
        .map(|ident| quote!(let #ident = #private::Binding;));
    let used = graph
        .nodes
        .iter()
        .flat_map(|node| node.args.iter().chain(node.on_failure.args()))
        .map(|arg| &arg.ident)
        .filter(|ident| !ident.to_string().starts_with('_'))
        .map(|ident| quote!(#private::used(&#ident);));
    let output_use = output_binding(graph).map(|ident| quote!(#private::used(&#ident);));
    let span = Span::call_site();
    quote_spanned! {span=>
        #[allow(dead_code, clippy::no_effect_underscore_binding)]
        #(#lints)*
        fn __wf_uses() {
            #(#declared)*
            #(#used)*
            #output_use
        }
    }
}

/// The ident of the output when it is a binding or input (not a step call).
fn output_binding(graph: &Graph) -> Option<&syn::Ident> {
    let output = graph.output.as_ref()?;
    let ident = match output.source {
        Source::Input(i) => &graph.inputs[i].name,
        Source::Node(n) => graph.nodes[n.0].binding.as_ref()?,
    };
    (!ident.to_string().starts_with('_')).then_some(ident)
}

/// The `Step` impl of a workflow, shared by both shapes: a workflow used as a node of
/// another one is a subworkflow.
fn step_impl(header: &Header<'_>, surface: &Surface) -> TokenStream {
    let Surface {
        private, output_ty, ..
    } = surface;
    let name = header.name;
    let step_name = name.to_string();
    let output_type = type_string(output_ty);
    quote! {
        impl #private::Step for #name {
            type Output = #output_ty;
            const NAME: &'static str = #step_name;
            const OUTPUT_TYPE: &'static str = #output_type;
            const POLICY: #private::Policy = #private::Policy::DEFAULT;
            const SUBGRAPH: ::core::option::Option<&'static #private::Graph> =
                ::core::option::Option::Some(&__WF_GRAPH);
            const ID: &'static str = ::core::concat!(::core::module_path!(), "::", #step_name);
        }
    }
}

/// The generic context parameter of a subworkflow's entry points, and the expression that
/// gives the subworkflow its own context from `__wf_ctx`.
fn sub_context(header: &Header<'_>, surface: &Surface) -> (TokenStream, TokenStream) {
    let Surface {
        private, ctx_ty, ..
    } = surface;
    if header.has_ctx {
        (
            quote!(__WfCtx: #private::SubContext<#ctx_ty> + ::core::marker::Send + ::core::marker::Sync + ?::core::marker::Sized),
            quote!(<__WfCtx as #private::SubContext<#ctx_ty>>::sub_context(__wf_ctx)),
        )
    } else {
        (
            quote!(__WfCtx: ::core::marker::Send + ::core::marker::Sync + ?::core::marker::Sized),
            quote!(#private::no_context(__wf_ctx)),
        )
    }
}

/// A dataflow workflow as a node of another workflow: as a dataflow step, its inputs are
/// the node's arguments; as a node of a state graph over `S`, it runs when its input and
/// output are both `S`, and its output becomes the new state.
fn dataflow_as_step(header: &Header<'_>, surface: &Surface, inputs: &[&syn::Type]) -> TokenStream {
    let Surface {
        private, output_ty, ..
    } = surface;
    let name = header.name;
    let vis = header.vis;
    let step = step_impl(header, surface);
    let (ctx_generic, ctx) = sub_context(header, surface);
    let args: Vec<_> = (0..inputs.len())
        .map(|i| format_ident!("__wf_a{}", i))
        .collect();
    let clone = quote!(#private::CloneInput::<__WfCtx>::clone_input);
    let input = match args.as_slice() {
        [] => quote!(()),
        [arg] => quote!(#clone(#arg)),
        args => quote!((#(#clone(#args),)*)),
    };
    quote! {
        #step

        impl #name {
            #[doc(hidden)]
            #[allow(clippy::ptr_arg, clippy::trivially_copy_pass_by_ref)]
            #vis async fn __wf_call<#ctx_generic>(
                __wf_ctx: &#private::ArcPtr<__WfCtx>,
                #(#args: &#inputs),*
            ) -> ::core::result::Result<#output_ty, #private::StepError>
            where
                #(#inputs: #private::CloneInput<__WfCtx>,)*
            {
                #private::subworkflow::<Self, _>(&#ctx, #input).await
            }
        }

        impl<#ctx_generic, __WfState> #private::StateStep<__WfCtx, __WfState> for #name
        where
            Self: #private::Workflow<Input = __WfState, Output = __WfState>,
            __WfState: ::core::clone::Clone + ::core::marker::Send + ::core::marker::Sync,
        {
            type Value = ();

            fn call<'__wf_a>(
                __wf_ctx: &'__wf_a #private::ArcPtr<__WfCtx>,
                __wf_state: &'__wf_a mut __WfState,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<(), #private::StepError>,
            > + ::core::marker::Send + '__wf_a {
                async move {
                    let __wf_input = ::core::clone::Clone::clone(&*__wf_state);
                    *__wf_state = #private::subworkflow::<Self, _>(&#ctx, __wf_input).await?;
                    ::core::result::Result::Ok(())
                }
            }
        }
    }
}

/// A state graph as a node of another workflow: as a dataflow step it takes the initial
/// state and gives the final one; as a node of a state graph over the same state it
/// replaces the state with its final one.
pub(crate) fn state_graph_as_step(header: &Header<'_>, surface: &Surface) -> TokenStream {
    let Surface {
        private,
        input_ty: state_ty,
        ..
    } = surface;
    let name = header.name;
    let vis = header.vis;
    let step = step_impl(header, surface);
    let (ctx_generic, ctx) = sub_context(header, surface);
    quote! {
        #step

        impl #name {
            #[doc(hidden)]
            #[allow(clippy::ptr_arg)]
            #vis async fn __wf_call<#ctx_generic>(
                __wf_ctx: &#private::ArcPtr<__WfCtx>,
                __wf_state: &#state_ty,
            ) -> ::core::result::Result<#state_ty, #private::StepError> {
                let __wf_input = ::core::clone::Clone::clone(__wf_state);
                #private::state_subworkflow::<Self, _>(&#ctx, __wf_input).await
            }
        }

        impl<#ctx_generic> #private::StateStep<__WfCtx, #state_ty> for #name {
            type Value = ();

            fn call<'__wf_a>(
                __wf_ctx: &'__wf_a #private::ArcPtr<__WfCtx>,
                __wf_state: &'__wf_a mut #state_ty,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<(), #private::StepError>,
            > + ::core::marker::Send + '__wf_a {
                async move {
                    let __wf_input = ::core::clone::Clone::clone(&*__wf_state);
                    *__wf_state = #private::state_subworkflow::<Self, _>(&#ctx, __wf_input).await?;
                    ::core::result::Result::Ok(())
                }
            }
        }
    }
}
