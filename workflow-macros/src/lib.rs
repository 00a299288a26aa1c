//! Procedural macros of the `workflow` crate: `#[step]` and `workflow!`.
//!
//! Depend on `workflow`, which re-exports these with the runtime they expand to. The
//! expansion functions take and return `proc_macro2::TokenStream`, so tests call them
//! outside the compiler.

mod errors;
mod expand;
mod model;
mod parse;
mod policy;
mod state;
mod step;
mod tokens;
mod validate;

#[cfg(test)]
mod tests;

/// Marks a function as a workflow step. See the `workflow` crate's documentation.
#[proc_macro_attribute]
pub fn step(
    args: proc_macro::TokenStream,
    item: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    step::step(args.into(), item.into()).into()
}

/// Declares a workflow. See the `workflow` crate's documentation.
#[proc_macro]
pub fn workflow(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    expand::workflow(input.into()).into()
}
