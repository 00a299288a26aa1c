//! Tests of both macros through their `proc_macro2` entry points: a mutation fuzzer (no
//! input may panic; every output is valid Rust; every error points into the input), the
//! expansions as insta snapshots, and the exact wording of the common errors.
//!
//! Inputs are parsed from strings, not written with `quote!`, so that with proc-macro2's
//! `span-locations` feature (a dev-dependency feature of this crate) every input token has a
//! line and column, and a test can tell an error at the user's token from one at
//! `Span::call_site()`.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use proc_macro2::{Delimiter, Group, Ident, LineColumn, Punct, Span, TokenStream, TokenTree};

// ---------------------------------------------------------------------------------------
// Inputs. Each string starts with a newline: no input token is then on line 1, where
// `Span::call_site()` reports itself (see `call_site_spans_report_line_one_column_zero`).

const CONTENT_PIPELINE: &str = r"
    /// One topic in, a blog post and its social posts out.
    pub(crate) ContentPipeline(ctx: Ctx, topic: Topic) -> Published {
        let research = research(topic);
        let post = blog_post(research);
        let linkedin = linkedin(post);
        let tweet = twitter(post);
        let email = email(post);
        let meta = meta(tweet);
        let checked = quality_check(linkedin, tweet, email, meta);
        publish(checked)
    }
";

/// A diamond, a `let _ =` node, two inputs, no context.
const DIAMOND: &str = r"
    Diamond(x: u32, label: String) -> u64 {
        let a = split(x);
        let b = left(a, label);
        let c = right(a);
        let _ = audit(b, c);
        join(b, c)
    }
";

/// Step paths, a crate override, a lint attribute, a binding as the output.
const PATHS: &str = r#"
    #[workflow(crate = "::workflow")]
    #[allow(unused_variables)]
    pub Paths(_ctx: Arc<Ctx>, a: Vec<(u8, &'static str)>, b: B) -> steps::Out {
        let x = steps::a(a);
        let y = ::steps::nested::b(x, b);
        let _unused = steps::c(y);
        y
    }
"#;

/// Rejected by `validate`: a cycle through three nodes.
const CYCLE: &str = r"
    Loop(x: u32) -> u32 {
        let a = f(x, c);
        let b = g(a);
        let c = h(b);
        c
    }
";

/// Node policies: overrides, skip with a `.ok()` reader, a fallback value and step.
const POLICIES: &str = r#"
    Announce(ctx: Ctx, post: Post) -> Sent {
        #[node(retries = 2, backoff = "1s..10s", jitter = "none", on_failure = skip)]
        let email = email(post);
        #[node(timeout = "5s", fallback = Meta::default())]
        let meta = tag(post);
        #[node(fallback_step = cached(post, meta))]
        let page = fetch(post);
        send(page, meta, email.ok())
    }
"#;

const REVIEW_LOOP: &str = r#"
    /// Reviews until good enough.
    pub CodeReview(ctx: Ctx, review: &mut Review) {
        #[node(retries = 3, timeout = "30s")] extract -> complexity -> evaluate;
        evaluate => match {
            Verdict::Good => END,
            Verdict::Revise { .. } | Verdict::Retry => revise,
        } max 5 => END;
        revise -> extract;
    }
"#;

const ROUTER: &str = "
    Triage(ticket: &mut Ticket) {
        classify => match {
            (Kind::Bug, p) if p > 5 => handlers::urgent,
            (Kind::Bug, _) => triage,
            _ => END,
        };
        urgent -> triage -> END;
    }
";

const WORKFLOW_SEEDS: [(&str, &str); 7] = [
    ("content pipeline", CONTENT_PIPELINE),
    ("policies", POLICIES),
    ("diamond", DIAMOND),
    ("paths", PATHS),
    ("cycle", CYCLE),
    ("review loop", REVIEW_LOOP),
    ("router", ROUTER),
];

/// `(name, #[step] arguments, item)`.
const STEP_SEEDS: [(&str, &str, &str); 5] = [
    (
        "async, ctx, fallible, options",
        r#"
    retries = 3, backoff = "100ms..10s", timeout = "30s"
"#,
        r"
    /// Gathers notes on the topic.
    pub(crate) async fn research(ctx: &Ctx, topic: &Topic) -> Result<Research, LlmError> {
        ctx.llm.complete(topic).await
    }
",
    ),
    (
        "sync, owned and borrowed inputs",
        "\n",
        r"
    fn quality_check(linkedin: &Social, tweet: Social, limit: u32) -> Checked {
        check(linkedin, &tweet, limit)
    }
",
    ),
    (
        "lifetimes, `_ctx`, io::Result, name and crate",
        r#"
    name = "fetch page", crate = "::workflow", timeout = "1.5s"
"#,
        r"
    pub async fn fetch<'a>(_ctx: &'a Ctx, url: &'a str) -> std::io::Result<Vec<u8>> {
        Ok(url.as_bytes().to_vec())
    }
",
    ),
    (
        "no inputs, unit output",
        r"
    retries = 0
",
        r"
    async fn tick() {}
",
    ),
    (
        "state step: async, ctx, fallible",
        r"
    retries = 2
",
        r"
    async fn evaluate(ctx: &Ctx, review: &mut Review) -> Result<Verdict, StepError> {
        ctx.judge(review).await
    }
",
    ),
];

fn tokens(source: &str) -> TokenStream {
    source.parse().expect("the test's input is valid tokens")
}

// ---------------------------------------------------------------------------------------
// A seeded PRNG (splitmix64): the same seed always gives the same case.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`; `n` must not be 0.
    fn below(&mut self, n: usize) -> usize {
        let n = u64::try_from(n).expect("usize fits in u64");
        usize::try_from(self.next() % n).expect("less than a usize")
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------------------
// Mutations, on token trees at any depth.

#[derive(Clone, Copy, Debug)]
enum Mutation {
    Drop,
    Duplicate,
    SwapWithNext,
    RenameIdent,
    ReplacePunct,
    UnwrapGroup,
    WrapInGroup,
}

const MUTATIONS: [Mutation; 7] = [
    Mutation::Drop,
    Mutation::Duplicate,
    Mutation::SwapWithNext,
    Mutation::RenameIdent,
    Mutation::ReplacePunct,
    Mutation::UnwrapGroup,
    Mutation::WrapInGroup,
];

/// Names a rename may pick besides the input's own (and `r#type`): keywords, the macros'
/// reserved names, the context's names.
const FRESH_IDENTS: [&str; 16] = [
    "x",
    "zz",
    "_",
    "ctx",
    "_ctx",
    "let",
    "fn",
    "async",
    "pub",
    "crate",
    "self",
    "Self",
    "super",
    "__wf_n0",
    "__WF_GRAPH",
    "Result",
];

const PUNCTS: [char; 17] = [
    ',', ';', ':', '=', '-', '>', '<', '#', '!', '&', '*', '.', '/', '|', '+', '@', '?',
];

/// Every identifier in `stream`, at any depth, once each.
fn idents_of(stream: &TokenStream, out: &mut Vec<String>) {
    for token in stream.clone() {
        match token {
            TokenTree::Ident(ident) => {
                let name = ident.to_string();
                if !out.contains(&name) {
                    out.push(name);
                }
            }
            TokenTree::Group(group) => idents_of(&group.stream(), out),
            TokenTree::Punct(_) | TokenTree::Literal(_) => {}
        }
    }
}

fn count(tokens: &[TokenTree], eligible: &dyn Fn(&TokenTree) -> bool) -> usize {
    tokens
        .iter()
        .map(|token| {
            let inner = match token {
                TokenTree::Group(group) => {
                    count(&group.stream().into_iter().collect::<Vec<_>>(), eligible)
                }
                _ => 0,
            };
            usize::from(eligible(token)) + inner
        })
        .sum()
}

/// Calls `edit` on the `n`th eligible token (pre-order, any depth), given the list that
/// holds it and its index there, and rebuilds the groups around it, keeping their spans.
fn edit_nth(
    tokens: &mut Vec<TokenTree>,
    eligible: &dyn Fn(&TokenTree) -> bool,
    n: &mut usize,
    edit: &mut dyn FnMut(&mut Vec<TokenTree>, usize),
) -> bool {
    for i in 0..tokens.len() {
        if eligible(&tokens[i]) {
            if *n == 0 {
                edit(tokens, i);
                return true;
            }
            *n -= 1;
        }
        if let TokenTree::Group(group) = &tokens[i] {
            let mut inner: Vec<TokenTree> = group.stream().into_iter().collect();
            if edit_nth(&mut inner, eligible, n, edit) {
                let mut new = Group::new(group.delimiter(), inner.into_iter().collect());
                new.set_span(group.span());
                tokens[i] = TokenTree::Group(new);
                return true;
            }
        }
    }
    false
}

/// Applies `mutation` at a random eligible place; `false` when there is none.
fn mutate(
    tokens: &mut Vec<TokenTree>,
    mutation: Mutation,
    names: &[String],
    rng: &mut Rng,
) -> bool {
    let eligible: &dyn Fn(&TokenTree) -> bool = match mutation {
        Mutation::RenameIdent => &|t| matches!(t, TokenTree::Ident(_)),
        Mutation::ReplacePunct => &|t| matches!(t, TokenTree::Punct(_)),
        Mutation::UnwrapGroup => &|t| matches!(t, TokenTree::Group(_)),
        _ => &|_| true,
    };
    let total = count(tokens, eligible);
    if total == 0 {
        return false;
    }
    let mut n = rng.below(total);
    edit_nth(tokens, eligible, &mut n, &mut |list, i| match mutation {
        Mutation::Drop => {
            list.remove(i);
        }
        Mutation::Duplicate => {
            let copy = list[i].clone();
            list.insert(i + 1, copy);
        }
        Mutation::SwapWithNext => {
            if i + 1 < list.len() {
                list.swap(i, i + 1);
            } else if i > 0 {
                list.swap(i - 1, i);
            }
        }
        Mutation::RenameIdent => {
            let span = list[i].span();
            let ident = match rng.below(8) {
                0 => Ident::new_raw("type", span),
                1 | 2 => Ident::new(FRESH_IDENTS[rng.below(FRESH_IDENTS.len())], span),
                _ => Ident::new(rng.pick(names).as_str(), span),
            };
            list[i] = TokenTree::Ident(ident);
        }
        Mutation::ReplacePunct => {
            if let TokenTree::Punct(old) = &list[i] {
                let mut new = Punct::new(*rng.pick(&PUNCTS), old.spacing());
                new.set_span(old.span());
                list[i] = TokenTree::Punct(new);
            }
        }
        Mutation::UnwrapGroup => {
            if let TokenTree::Group(group) = list.remove(i) {
                for (k, token) in group.stream().into_iter().enumerate() {
                    list.insert(i + k, token);
                }
            }
        }
        Mutation::WrapInGroup => {
            let len = (1 + rng.below(3)).min(list.len() - i);
            let span = list[i].span();
            let wrapped: TokenStream = list.drain(i..i + len).collect();
            let delimiter = *rng.pick(&[
                Delimiter::Parenthesis,
                Delimiter::Brace,
                Delimiter::Bracket,
                Delimiter::None,
            ]);
            let mut group = Group::new(delimiter, wrapped);
            group.set_span(span);
            list.insert(i, TokenTree::Group(group));
        }
    })
}

/// 1 to 3 random mutations of `stream`, and what they were.
fn mutated(stream: &TokenStream, names: &[String], rng: &mut Rng) -> (TokenStream, String) {
    let mut tokens: Vec<TokenTree> = stream.clone().into_iter().collect();
    let mut applied = Vec::new();
    for _ in 0..=rng.below(3) {
        let mutation = *rng.pick(&MUTATIONS);
        if mutate(&mut tokens, mutation, names, rng) {
            applied.push(format!("{mutation:?}"));
        }
    }
    (tokens.into_iter().collect(), applied.join(", "))
}

// ---------------------------------------------------------------------------------------
// Reading outputs.

/// An error as emitted: `::core::compile_error! { "message" }`.
struct EmittedError {
    message: String,
    /// The spans of the `compile_error` ident and of the braces: the error's start and
    /// end spans.
    spans: [Span; 2],
}

fn emitted_errors(stream: &TokenStream, out: &mut Vec<EmittedError>) {
    let tokens: Vec<TokenTree> = stream.clone().into_iter().collect();
    for (i, token) in tokens.iter().enumerate() {
        match token {
            TokenTree::Ident(ident) if ident == "compile_error" => {
                if let Some(TokenTree::Group(group)) = tokens.get(i + 2) {
                    let message = syn::parse2::<syn::LitStr>(group.stream())
                        .map_or_else(|_| group.stream().to_string(), |lit| lit.value());
                    out.push(EmittedError {
                        message,
                        spans: [ident.span(), group.span()],
                    });
                }
            }
            TokenTree::Group(group) => emitted_errors(&group.stream(), out),
            _ => {}
        }
    }
}

fn error_messages(output: &TokenStream) -> Vec<String> {
    let mut errors = Vec::new();
    emitted_errors(output, &mut errors);
    errors.into_iter().map(|error| error.message).collect()
}

/// Where the input's tokens start and end.
#[derive(Default)]
struct InputSpans {
    starts: HashSet<(usize, usize)>,
    ends: HashSet<(usize, usize)>,
}

impl InputSpans {
    fn of(streams: &[&TokenStream]) -> Self {
        fn add(spans: &mut InputSpans, stream: &TokenStream) {
            for token in stream.clone() {
                let span = token.span();
                spans.starts.insert(at(span.start()));
                spans.ends.insert(at(span.end()));
                if let TokenTree::Group(group) = token {
                    add(spans, &group.stream());
                }
            }
        }
        let mut spans = Self::default();
        for stream in streams {
            add(&mut spans, stream);
        }
        spans
    }

    /// Whether `span` starts or ends where an input token does (so the error points at the
    /// input, not at the macro call).
    fn contains(&self, span: Span) -> bool {
        self.starts.contains(&at(span.start())) || self.ends.contains(&at(span.end()))
    }
}

fn at(position: LineColumn) -> (usize, usize) {
    (position.line, position.column)
}

/// The messages syn gives when the input ends too early, at the call site: "unexpected end
/// of input, ..." and, from a token's parser, "expected `=`".
fn is_syn_end_of_input(message: &str) -> bool {
    message.starts_with("unexpected end of input")
        || message
            .strip_prefix("expected `")
            .and_then(|rest| rest.strip_suffix('`'))
            .is_some_and(|token| !token.contains('`'))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic payload)".to_owned())
}

/// What went wrong with one expansion, if anything.
fn check_output(
    output: std::thread::Result<TokenStream>,
    must_be_rust: bool,
    input: &InputSpans,
) -> Result<bool, String> {
    let output = output.map_err(|payload| format!("panicked: {}", panic_message(&*payload)))?;
    if must_be_rust {
        syn::parse2::<syn::File>(output.clone())
            .map_err(|error| format!("the output is not valid Rust ({error}):\n{output}"))?;
    }
    let mut errors = Vec::new();
    emitted_errors(&output, &mut errors);
    if errors.is_empty() {
        return Ok(false);
    }
    let located = errors
        .iter()
        .any(|error| error.spans.iter().any(|&span| input.contains(span)));
    // syn reports running out of tokens at the parse's scope: for the whole input, that is
    // the macro call (the whole `workflow! { ... }` or `#[step(...)]`), a fair place.
    let ran_out = errors
        .iter()
        .any(|error| is_syn_end_of_input(&error.message));
    if located || ran_out {
        Ok(true)
    } else {
        let messages: Vec<_> = errors
            .iter()
            .map(|error| {
                let [start, end] = error.spans;
                format!(
                    "{:?} at {:?}..{:?}",
                    error.message,
                    at(start.start()),
                    at(end.end())
                )
            })
            .collect();
        Err(format!(
            "no error points into the input (all at the call site): {messages:?}"
        ))
    }
}

// ---------------------------------------------------------------------------------------
// The fuzzers.

const WORKFLOW_CASES: u64 = 12_000;
const STEP_CASES: u64 = 4_000;

/// The seed of case `case`. A case's input depends only on its seed, so a failure
/// reproduces on every run; its printed input can then become a unit test.
fn case_seed(base: u64, case: u64) -> u64 {
    Rng(base ^ case.wrapping_mul(0xA24B_AED4_963E_E407)).next()
}

/// Panics after running every case if any failed, showing the first five (or
/// `FUZZ_SHOW=n` of them).
fn report(kind: &str, cases: u64, failures: &[String], errors: usize, elapsed: f64) {
    eprintln!(
        "{kind}: {cases} mutated inputs in {elapsed:.2}s, {errors} rejected with errors, {} failures",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} {kind} cases failed; the first ones:\n\n{}",
        failures.len(),
        failures
            .iter()
            .take(
                std::env::var("FUZZ_SHOW")
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(5)
            )
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

#[test]
fn mutated_workflows_never_panic_and_expand_to_located_errors() {
    let start = Instant::now();
    let seeds: Vec<(&str, TokenStream, Vec<String>)> = WORKFLOW_SEEDS
        .iter()
        .map(|&(name, source)| {
            let stream = tokens(source);
            let mut names = Vec::new();
            idents_of(&stream, &mut names);
            (name, stream, names)
        })
        .collect();
    let (mut failures, mut rejected) = (Vec::new(), 0);
    for case in 0..WORKFLOW_CASES {
        let seed = case_seed(0x5EED_F10E, case);
        let mut rng = Rng(seed);
        let (name, stream, names) = rng.pick(&seeds);
        let (input, mutations) = mutated(stream, names, &mut rng);
        let output = catch_unwind(AssertUnwindSafe(|| crate::expand::workflow(input.clone())));
        match check_output(output, true, &InputSpans::of(&[&input])) {
            Ok(had_errors) => rejected += usize::from(had_errors),
            Err(problem) => failures.push(format!(
                "case {case} (seed {seed:#018x}), {name} after {mutations}:\n  input: {input}\n  {problem}"
            )),
        }
    }
    report(
        "workflow!",
        WORKFLOW_CASES,
        &failures,
        rejected,
        start.elapsed().as_secs_f64(),
    );
}

#[test]
fn mutated_steps_never_panic_and_expand_to_located_errors() {
    let start = Instant::now();
    let seeds: Vec<(&str, TokenStream, TokenStream, Vec<String>)> = STEP_SEEDS
        .iter()
        .map(|&(name, args, item)| {
            let (args, item) = (tokens(args), tokens(item));
            let mut names = Vec::new();
            idents_of(&args, &mut names);
            idents_of(&item, &mut names);
            (name, args, item, names)
        })
        .collect();
    let (mut failures, mut rejected) = (Vec::new(), 0);
    for case in 0..STEP_CASES {
        let seed = case_seed(0x5EED_57E9, case);
        let mut rng = Rng(seed);
        let (name, args, item, names) = rng.pick(&seeds);
        // Mutate the arguments, the item, or both.
        let (args, item, mutations) = match rng.below(3) {
            0 => {
                let (args, m) = mutated(args, names, &mut rng);
                (args, item.clone(), format!("args: {m}"))
            }
            1 => {
                let (item, m) = mutated(item, names, &mut rng);
                (args.clone(), item, format!("item: {m}"))
            }
            _ => {
                let (args, m1) = mutated(args, names, &mut rng);
                let (item, m2) = mutated(item, names, &mut rng);
                (args, item, format!("args: {m1}; item: {m2}"))
            }
        };
        // rustc only calls an attribute macro on an item it parsed; anything else is echoed
        // with the errors, and need not be valid Rust.
        let is_item = syn::parse2::<syn::Item>(item.clone()).is_ok();
        let output = catch_unwind(AssertUnwindSafe(|| {
            crate::step::step(args.clone(), item.clone())
        }));
        match check_output(output, is_item, &InputSpans::of(&[&args, &item])) {
            Ok(had_errors) => rejected += usize::from(had_errors),
            Err(problem) => failures.push(format!(
                "case {case} (seed {seed:#018x}), {name} after {mutations}:\n  args: {args}\n  item: {item}\n  {problem}"
            )),
        }
    }
    report(
        "#[step]",
        STEP_CASES,
        &failures,
        rejected,
        start.elapsed().as_secs_f64(),
    );
}

/// What the located-error check above relies on.
#[test]
fn call_site_spans_report_line_one_column_zero() {
    let call_site = Span::call_site();
    assert_eq!(at(call_site.start()), (1, 0));
    assert_eq!(at(call_site.end()), (1, 0));
    for (_, source) in WORKFLOW_SEEDS {
        let spans = InputSpans::of(&[&tokens(source)]);
        assert!(!spans.contains(call_site), "{source}");
    }
    for (_, args, item) in STEP_SEEDS {
        let spans = InputSpans::of(&[&tokens(args), &tokens(item)]);
        assert!(!spans.contains(call_site), "{args} {item}");
    }
}

/// The seeds themselves: the cycle is rejected, the others expand.
#[test]
fn seeds_expand_as_expected() {
    for (name, source) in WORKFLOW_SEEDS {
        let errors = error_messages(&crate::expand::workflow(tokens(source)));
        assert_eq!(errors.is_empty(), name != "cycle", "{name}: {errors:?}");
    }
    for (name, args, item) in STEP_SEEDS {
        let errors = error_messages(&crate::step::step(tokens(args), tokens(item)));
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Expansions.

fn expand(tokens: TokenStream) -> String {
    let file: syn::File = syn::parse2(crate::expand::workflow(tokens)).expect("valid Rust");
    prettyplease::unparse(&file)
}

fn expand_step(args: TokenStream, item: TokenStream) -> String {
    let file: syn::File = syn::parse2(crate::step::step(args, item)).expect("valid Rust");
    prettyplease::unparse(&file)
}

#[test]
fn content_pipeline_expansion() {
    insta::assert_snapshot!(expand(tokens(CONTENT_PIPELINE)));
}

#[test]
fn node_policies_expansion() {
    insta::assert_snapshot!(expand(tokens(POLICIES)));
}

#[test]
fn state_graph_with_route_bound_and_loop_expansion() {
    insta::assert_snapshot!(expand(tokens(REVIEW_LOOP)));
}

#[test]
fn state_step_expansion() {
    let (_, args, item) = STEP_SEEDS[4];
    insta::assert_snapshot!(expand_step(tokens(args), tokens(item)));
}

#[test]
fn diamond_with_discarded_node_and_two_inputs_expansion() {
    insta::assert_snapshot!(expand(tokens(DIAMOND)));
}

#[test]
fn async_fallible_step_with_context_and_options_expansion() {
    let (_, args, item) = STEP_SEEDS[0];
    insta::assert_snapshot!(expand_step(tokens(args), tokens(item)));
}

// ---------------------------------------------------------------------------------------
// Error messages.

/// The errors of a `workflow!`, with where each starts.
fn workflow_errors(source: &str) -> Vec<(String, (usize, usize))> {
    let mut errors = Vec::new();
    emitted_errors(&crate::expand::workflow(tokens(source)), &mut errors);
    errors
        .into_iter()
        .map(|error| (error.message, at(error.spans[0].start())))
        .collect()
}

fn step_errors(args: &str, item: &str) -> Vec<(String, (usize, usize))> {
    let mut errors = Vec::new();
    emitted_errors(&crate::step::step(tokens(args), tokens(item)), &mut errors);
    errors
        .into_iter()
        .map(|error| (error.message, at(error.spans[0].start())))
        .collect()
}

#[test]
fn a_duplicate_binding_is_reported_at_its_second_occurrence() {
    let errors = workflow_errors(
        "
W(x: u32) -> u32 {
    let a = f(x);
    let a = g(x);
    a
}",
    );
    assert_eq!(
        errors,
        [(
            "`a` is bound twice in this workflow: rename one of them".to_owned(),
            (4, 8)
        )]
    );
}

#[test]
fn a_binding_named_like_an_input_is_a_duplicate() {
    let errors = workflow_errors("\nW(x: u32) -> u32 { let x = f(x); x }");
    assert_eq!(
        errors,
        [(
            "`x` is bound twice in this workflow: rename one of them".to_owned(),
            (2, 23)
        )]
    );
}

#[test]
fn a_workflow_without_output_is_reported_at_its_closing_brace() {
    let errors = workflow_errors("\nW(x: u32) -> u32 { let a = f(x); }");
    assert_eq!(
        errors,
        [(
            "this workflow has no output: end its body with the binding or step call whose value `run` returns, e.g. `publish(checked)`".to_owned(),
            (2, 33)
        )]
    );
}

#[test]
fn a_missing_output_type_is_reported_after_the_inputs() {
    let errors = workflow_errors("\nW(x: u32) { f(x) }");
    assert_eq!(
        errors,
        [(
            "missing output type: add `-> Type` after the workflow's inputs".to_owned(),
            (2, 8)
        )]
    );
}

#[test]
fn a_semicolon_after_the_output_is_reported() {
    let errors = workflow_errors("\nW(x: u32) -> u32 { f(x); }");
    assert_eq!(
        errors,
        [(
            "the workflow's output is its last expression: remove this `;`".to_owned(),
            (2, 23)
        )]
    );
}

#[test]
fn passing_the_context_as_an_argument_is_explained() {
    let errors = workflow_errors("\nW(ctx: C, x: u32) -> u32 { f(ctx, x) }");
    assert_eq!(
        errors,
        [(
            "`ctx` is the workflow's context: steps receive it through their own leading `ctx` parameter, so do not pass it as an argument".to_owned(),
            (2, 29)
        )]
    );
}

#[test]
fn an_unknown_step_option_gets_a_suggestion() {
    let errors = step_errors("\nretires = 3", "\nfn f() {}");
    assert_eq!(
        errors,
        [(
            "unknown option `retires`; did you mean `retries`?".to_owned(),
            (2, 0)
        )]
    );
}

#[test]
fn an_unknown_step_option_without_close_match_lists_the_options() {
    let errors = step_errors("\ncolor = 3", "\nfn f() {}");
    assert_eq!(
        errors,
        [(
            "unknown option `color`; expected one of `retries`, `backoff`, `jitter`, `timeout`, `cache`, `version`, `name`, `crate`".to_owned(),
            (2, 0)
        )]
    );
}

#[test]
fn a_duplicate_step_option_is_reported_at_its_second_occurrence() {
    let errors = step_errors("\nretries = 1, retries = 2", "\nfn f() {}");
    assert_eq!(errors, [("duplicate option `retries`".to_owned(), (2, 13))]);
}

#[test]
fn step_on_a_struct_is_reported_on_its_keyword() {
    let errors = step_errors("\n", "\nstruct S;");
    assert_eq!(
        errors,
        [(
            "`#[step]` goes on a function, not on a struct".to_owned(),
            (2, 0)
        )]
    );
}

#[test]
fn a_mutable_context_is_rejected() {
    let errors = step_errors("\n", "\nfn f(ctx: &mut Ctx) {}");
    assert_eq!(
        errors,
        [(
            "the context parameter must be a shared reference: `ctx: &Ctx`".to_owned(),
            (2, 10)
        )]
    );
}

#[test]
fn bad_durations_are_errors_not_panics() {
    for text in [
        format!("{}.9ns", u128::MAX),
        format!("{}s", u128::MAX),
        "1.5.s".to_owned(),
        ".s".to_owned(),
        "µs".to_owned(),
        "1µs".to_owned(),
        String::new(),
    ] {
        let result = catch_unwind(|| crate::policy::parse_duration(&text));
        assert!(result.is_ok(), "parse_duration({text:?}) panicked");
    }
}

#[test]
fn a_workflow_without_body_is_reported_at_its_output_type() {
    let errors = workflow_errors("\nW(x: u32) -> Vec<u32>");
    assert_eq!(
        errors,
        [(
            "expected the workflow's body `{ ... }` after the output type".to_owned(),
            (2, 13)
        )]
    );
}

#[test]
fn retries_without_a_value_is_reported_at_the_option() {
    let errors = step_errors("\nretries =", "\nfn f() {}");
    assert_eq!(
        errors,
        [(
            "`retries` takes a whole number, e.g. `retries = 3`".to_owned(),
            (2, 0)
        )]
    );
}

#[test]
fn a_duration_past_u128_is_too_long_not_a_panic() {
    // The most whole hours a u128 of nanoseconds holds, plus almost an hour.
    let text = format!("{}.999999999999h", u128::MAX / 3_600_000_000_000);
    let result = catch_unwind(|| crate::policy::parse_duration(&text));
    assert_eq!(
        result.expect("no panic"),
        Err(format!("duration `{text}` is too long"))
    );
}

// ---------------------------------------------------------------------------------------
// Size of the expansion, of the `compile_time` benchmark's workflows (the benchmark reads
// the figures printed here).

include!("../../benches/common/layered.rs");

/// Token trees in `stream`, groups and their contents.
fn token_count(stream: TokenStream) -> usize {
    stream
        .into_iter()
        .map(|token| match token {
            TokenTree::Group(group) => 1 + token_count(group.stream()),
            _ => 1,
        })
        .sum()
}

/// How many times `ident` occurs in `stream`, at any depth.
fn ident_count(stream: TokenStream, ident: &str) -> usize {
    stream
        .into_iter()
        .map(|token| match token {
            TokenTree::Group(group) => ident_count(group.stream(), ident),
            TokenTree::Ident(found) if found == ident => 1,
            _ => 0,
        })
        .sum()
}

/// Nodes share their step's future: a workflow's expansion holds the same number of
/// `async` blocks (each a state machine for rustc and LLVM to compile) whatever its number
/// of nodes, so a node costs the build a plain function. One `async` block per node made
/// a 1,000-node workflow take 21 s to build in release, against 9 s shared.
#[test]
fn async_blocks_do_not_grow_with_the_nodes() {
    let counts: Vec<usize> = [10, 100, 1000]
        .into_iter()
        .map(|n| {
            ident_count(
                crate::expand::workflow(tokens(&layered_workflow(n))),
                "async",
            )
        })
        .collect();
    assert!(counts[0] > 0, "{counts:?}");
    assert!(counts.iter().all(|&c| c == counts[0]), "{counts:?}");
}

/// The expansion grows in proportion to the nodes: nothing in it lists every node per node.
/// Prints each size and the expansion's time (a debug build, as the macro runs when a
/// user's crate builds in debug).
#[test]
fn expansion_grows_linearly() {
    let mut sizes = Vec::new();
    for n in [100, 500, 1000] {
        let input = layered_workflow(n);
        let input_tokens = tokens(&input);
        let start = Instant::now();
        let output = crate::expand::workflow(input_tokens);
        let elapsed = start.elapsed();
        assert_eq!(error_messages(&output), Vec::<String>::new(), "{n} nodes");
        let bytes = output.to_string().len();
        let count = token_count(output);
        println!(
            "expansion of {n} nodes: {count} tokens, {bytes} bytes, input {} bytes, {:.1} ms",
            input.len(),
            elapsed.as_secs_f64() * 1000.0
        );
        sizes.push((count, bytes));
    }
    let (tokens_100, bytes_100) = sizes[0];
    let (tokens_1000, bytes_1000) = sizes[2];
    assert!(tokens_1000 < 12 * tokens_100, "{sizes:?}");
    assert!(bytes_1000 < 12 * bytes_100, "{sizes:?}");
}

/// Nodes without a binding are named after their step, numbered past the names taken.
#[test]
fn discarded_nodes_of_one_step_get_numbered_names() {
    let source = "
        W(x: u32) -> u32 {
            let audit_3 = f(x);
            let _ = audit(audit_3);
            let _ = audit(audit_3);
            let _ = audit(audit_3);
            let _ = other::audit(audit_3);
            audit_3
        }
    ";
    let Ok(crate::parse::Decl::Dataflow(input)) = syn::parse2(tokens(source)) else {
        panic!("a dataflow workflow");
    };
    let mut errors = crate::errors::Errors::default();
    let graph = crate::model::Graph::build(input, &mut errors);
    assert!(errors.is_empty());
    let names: Vec<&str> = graph.nodes.iter().map(|node| node.name.as_str()).collect();
    assert_eq!(names, ["audit_3", "audit", "audit_2", "audit_4", "audit_5"]);
}
