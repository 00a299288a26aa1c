//! Token helpers shared by both macros.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::ToTokens;

/// `span`'s place in the source, with the hygiene of the macro's call: for generated code
/// that names the macro's own bindings (`__wf_run`, `__wf_value`) but is reported at a
/// user's token. That token may come from elsewhere (a `macro_rules!` that writes the
/// `workflow!`, given a step's name), where those bindings do not exist.
pub(crate) fn at(span: Span) -> Span {
    Span::call_site().located_at(span)
}

/// Gives every token (recursively) the same span, so that rustc reports an error in
/// generated code at the user's token instead of at the macro call.
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &mut token {
                let mut new = Group::new(group.delimiter(), respan(group.stream(), span));
                new.set_span(span);
                *group = new;
            }
            token.set_span(span);
            token
        })
        .collect()
}

/// A type as people write it: `Vec<String>`, not `Vec < String >`.
pub(crate) fn type_string(ty: &impl ToTokens) -> String {
    let spaced = ty.to_token_stream().to_string();
    let mut out = String::with_capacity(spaced.len());
    let chars: Vec<char> = spaced.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let before = i.checked_sub(1).map(|j| chars[j]);
            let after = chars.get(i + 1).copied();
            let glue_before = matches!(before, Some('<' | '&' | '(' | '[' | ':' | '\''));
            let glue_after = matches!(after, Some('<' | '>' | ',' | '(' | ')' | ']' | ':' | ';'));
            if glue_before || glue_after {
                continue;
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::type_string;

    #[test]
    fn types_read_as_written() {
        let ty: syn::Type = syn::parse_quote!(Vec<(String, &'static str)>);
        assert_eq!(type_string(&ty), "Vec<(String, &'static str)>");
        let ty: syn::Type = syn::parse_quote!(std::collections::HashMap<u32, Box<dyn Fn()>>);
        assert_eq!(
            type_string(&ty),
            "std::collections::HashMap<u32, Box<dyn Fn()>>"
        );
        let ty: syn::Type = syn::parse_quote!(&mut [u8; 4]);
        assert_eq!(type_string(&ty), "&mut [u8; 4]");
    }
}
