//! The policy options `#[step(...)]` and `#[node(...)]` share: `retries`, `backoff`,
//! `jitter`, `timeout`, `cache`. Every value is checked here, so a bad one is a compile error at
//! its literal.

use proc_macro2::TokenStream;
use quote::quote;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned as _;
use syn::{LitInt, LitStr};

/// The policy options, in the order the docs list them.
pub(crate) const KEYS: [&str; 5] = ["retries", "backoff", "jitter", "timeout", "cache"];

/// The policy options given in one attribute.
#[derive(Default)]
pub(crate) struct PolicyOptions {
    retries: Option<u32>,
    /// Nanoseconds.
    backoff: Option<(u128, u128)>,
    /// `true` for full jitter (the default), `false` for none.
    jitter: Option<bool>,
    /// Nanoseconds.
    timeout: Option<u128>,
    cache: Option<Cache>,
}

/// A `cache` option's value.
#[derive(Clone, Copy)]
enum Cache {
    /// `cache = "off"`.
    Off,
    /// A time to live, in nanoseconds.
    For(u128),
}

impl PolicyOptions {
    /// Whether `key` was given already; `None` when `key` is not a policy option.
    pub(crate) fn seen(&self, key: &str) -> Option<bool> {
        match key {
            "retries" => Some(self.retries.is_some()),
            "backoff" => Some(self.backoff.is_some()),
            "jitter" => Some(self.jitter.is_some()),
            "timeout" => Some(self.timeout.is_some()),
            "cache" => Some(self.cache.is_some()),
            _ => None,
        }
    }

    /// Whether no policy option was given.
    pub(crate) fn is_empty(&self) -> bool {
        KEYS.iter().all(|key| self.seen(key) == Some(false))
    }

    /// Parses the value of the policy option `key` (one of [`KEYS`]).
    pub(crate) fn parse(&mut self, key: &str, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        match key {
            "retries" => self.retries = Some(whole_number(meta, "retries", 3)?),
            "backoff" => {
                let lit: LitStr = meta.value()?.parse()?;
                self.backoff = Some(parse_backoff(&lit)?);
            }
            "jitter" => {
                let lit: LitStr = meta.value()?.parse()?;
                self.jitter = Some(match lit.value().as_str() {
                    "full" => true,
                    "none" => false,
                    other => {
                        return Err(syn::Error::new(
                            lit.span(),
                            format!(
                                "unknown jitter `{other}`; expected `\"full\"` (the default) or `\"none\"`"
                            ),
                        ));
                    }
                });
            }
            "cache" => {
                let value = meta.value()?;
                let span = if value.is_empty() {
                    meta.path.span()
                } else {
                    value.span()
                };
                let lit: LitStr = value.parse().map_err(|_| {
                    syn::Error::new(
                        span,
                        "`cache` takes how long an output is reused, as a string: `cache = \"1h\"` (or `\"off\"`)",
                    )
                })?;
                if lit.value() == "off" {
                    self.cache = Some(Cache::Off);
                    return Ok(());
                }
                let nanos = parse_duration(&lit.value()).map_err(|message| {
                    syn::Error::new(
                        lit.span(),
                        format!("{message}; `cache` takes how long an output is reused, e.g. `cache = \"1h\"`, or `\"off\"`"),
                    )
                })?;
                if nanos == 0 {
                    return Err(syn::Error::new(
                        lit.span(),
                        "`cache` must be longer than zero; to turn caching off, write `cache = \"off\"`",
                    ));
                }
                self.cache = Some(Cache::For(nanos));
            }
            _ => {
                let lit: LitStr = meta.value()?.parse()?;
                let nanos = parse_duration(&lit.value())
                    .map_err(|message| syn::Error::new(lit.span(), message))?;
                if nanos == 0 {
                    return Err(syn::Error::new(
                        lit.span(),
                        "`timeout` must be greater than zero",
                    ));
                }
                self.timeout = Some(nanos);
            }
        }
        Ok(())
    }

    /// A `Policy` expression: with `base`, the options given over it (`Policy { retries: 5,
    /// ..base }`); without, the options given over the defaults, spelled out in full.
    pub(crate) fn tokens(&self, private: &TokenStream, base: Option<TokenStream>) -> TokenStream {
        let backoff = self.backoff.map(|(min, max)| {
            let (min, max) = (nanos(min), nanos(max));
            quote!(#private::Backoff {
                min: ::core::time::Duration::from_nanos(#min),
                max: ::core::time::Duration::from_nanos(#max),
            })
        });
        let timeout = self.timeout.map(|t| {
            let t = nanos(t);
            quote!(::core::option::Option::Some(::core::time::Duration::from_nanos(#t)))
        });
        let jitter = self.jitter.map(|full| {
            if full {
                quote!(#private::Jitter::Full)
            } else {
                quote!(#private::Jitter::None)
            }
        });
        let cache = self.cache.map(|cache| match cache {
            Cache::For(t) => {
                let t = nanos(t);
                quote!(::core::option::Option::Some(::core::time::Duration::from_nanos(#t)))
            }
            Cache::Off => quote!(::core::option::Option::None),
        });
        let retries = self.retries.map(quote::ToTokens::into_token_stream);
        let complete = retries.is_some()
            && backoff.is_some()
            && timeout.is_some()
            && jitter.is_some()
            && cache.is_some();
        if let Some(base) = base.filter(|_| !complete) {
            let fields = [
                ("retries", retries),
                ("backoff", backoff),
                ("timeout", timeout),
                ("jitter", jitter),
                ("cache", cache),
            ]
            .into_iter()
            .filter_map(|(name, value)| {
                let name = syn::Ident::new(name, proc_macro2::Span::call_site());
                value.map(|value| quote!(#name: #value,))
            });
            return quote!(#private::Policy { #(#fields)* ..#base });
        }
        let retries = retries.unwrap_or_else(|| quote!(0u32));
        let backoff = backoff.unwrap_or_else(|| quote!(#private::Backoff::DEFAULT));
        let timeout = timeout.unwrap_or_else(|| quote!(::core::option::Option::None));
        let jitter = jitter.unwrap_or_else(|| quote!(#private::Jitter::Full));
        let cache = cache.unwrap_or_else(|| quote!(::core::option::Option::None));
        quote! {
            #private::Policy {
                retries: #retries,
                backoff: #backoff,
                timeout: #timeout,
                jitter: #jitter,
                cache: #cache,
            }
        }
    }
}

/// The value of option `key`, a whole number (`example` shows one in the error).
pub(crate) fn whole_number(
    meta: &ParseNestedMeta<'_>,
    key: &str,
    example: u32,
) -> syn::Result<u32> {
    let value = meta.value()?;
    // With no value, syn's span would be the call site: point at the option.
    let span = if value.is_empty() {
        meta.path.span()
    } else {
        value.span()
    };
    let lit: LitInt = value.parse().map_err(|_| {
        syn::Error::new(
            span,
            format!("`{key}` takes a whole number, e.g. `{key} = {example}`"),
        )
    })?;
    lit.base10_parse::<u32>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!("`{key}` must be a whole number from 0 to {}", u32::MAX),
        )
    })
}

/// `"100ms..10s"` into nanoseconds.
fn parse_backoff(lit: &LitStr) -> syn::Result<(u128, u128)> {
    let value = lit.value();
    let Some((min, max)) = value.split_once("..") else {
        return Err(syn::Error::new(
            lit.span(),
            format!("invalid backoff `{value}`: expected `MIN..MAX`, e.g. `\"100ms..10s\"`"),
        ));
    };
    let min = parse_duration(min).map_err(|m| syn::Error::new(lit.span(), m))?;
    let max = parse_duration(max).map_err(|m| syn::Error::new(lit.span(), m))?;
    if min == 0 {
        return Err(syn::Error::new(
            lit.span(),
            "the backoff's first delay must be greater than zero",
        ));
    }
    if min > max {
        return Err(syn::Error::new(
            lit.span(),
            format!("invalid backoff `{value}`: the first delay is longer than the longest"),
        ));
    }
    Ok((min, max))
}

/// `"1.5s"` into nanoseconds: a number (decimals allowed) and a unit.
pub(crate) fn parse_duration(text: &str) -> Result<u128, String> {
    let invalid = || {
        format!(
            "invalid duration `{text}`: expected a number and a unit (`ns`, `us`, `ms`, `s`, `m`, `h`, `d`), e.g. `\"30s\"` or `\"1.5s\"`"
        )
    };
    let text_trimmed = text.trim();
    let split = text_trimmed
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(invalid)?;
    let (number, unit) = text_trimmed.split_at(split);
    let unit_nanos: u128 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        _ => return Err(invalid()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(invalid());
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| invalid())?
    };
    let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(invalid)?;
    let mut scale = unit_nanos;
    let too_long = || format!("duration `{text}` is too long");
    for digit in fraction.chars() {
        scale /= 10;
        let digit = u128::from(digit.to_digit(10).ok_or_else(invalid)?);
        // A whole part near `u128::MAX` must not overflow here (a panic in the macro).
        nanos = nanos.checked_add(digit * scale).ok_or_else(too_long)?;
    }
    // Durations are stored as `u64` nanoseconds (over 580 years).
    if nanos > u128::from(u64::MAX) {
        return Err(too_long());
    }
    Ok(nanos)
}

/// `parse_duration` caps durations at `u64::MAX` nanoseconds.
fn nanos(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(30_000_000_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration("100ms"), Ok(100_000_000));
        assert_eq!(parse_duration("2m"), Ok(120_000_000_000));
        assert_eq!(parse_duration("10us"), Ok(10_000));
        assert_eq!(parse_duration("7d"), Ok(604_800_000_000_000));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1.2.3s").is_err());
        assert!(parse_duration("99999999999999999999999h").is_err());
    }
}
