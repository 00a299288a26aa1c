//! The code-review example's analysis, stage by stage: exact metrics on small inputs, the
//! issues and report for the bundled sample, and the review loop's rounds.

#[path = "../examples/code_review/analysis.rs"]
mod analysis;

use analysis::{
    AnalysisError, DEFAULT_THRESHOLD, Function, IssueKind, Review, SAMPLE, apply_fix, complexity,
    detect, evaluate, extract, report, revise, suggest,
};
use proc_macro2::{TokenStream, TokenTree};

/// One pass of the loop: extract, complexity, detect, suggest, evaluate.
fn pass(review: &mut Review) {
    extract(review).expect("the source parses");
    complexity(review);
    detect(review);
    suggest(review);
    evaluate(review);
}

/// The sample after one pass.
fn sample() -> Review {
    let mut review = Review::new("config.rs", SAMPLE, DEFAULT_THRESHOLD);
    pass(&mut review);
    review
}

/// The functions of `source`, measured.
fn measure(source: &str) -> Vec<Function> {
    let mut review = Review::new("input.rs", source, DEFAULT_THRESHOLD);
    extract(&mut review).expect("the input parses");
    complexity(&mut review);
    review.functions
}

/// `(complexity, nesting)` of the only function in `source`.
fn metrics(source: &str) -> (u32, u32) {
    match measure(source).as_slice() {
        [function] => (function.complexity, function.nesting),
        other => panic!("expected one function, found {other:?}"),
    }
}

/// The issues in `source` as `(line, kind)`.
fn issues(source: &str) -> Vec<(usize, IssueKind)> {
    let mut review = Review::new("input.rs", source, DEFAULT_THRESHOLD);
    pass(&mut review);
    review
        .issues
        .iter()
        .map(|issue| (issue.line, issue.kind))
        .collect()
}

/// The scores of `review`'s rounds, formatted (floats are not compared directly).
fn scores(review: &Review) -> Vec<String> {
    review
        .rounds
        .iter()
        .map(|round| format!("{:.1}", round.score))
        .collect()
}

/// Runs the loop by hand until the threshold is reached or `max_rounds` evaluations ran.
fn run_loop(threshold: f64, max_rounds: usize) -> Review {
    let mut review = Review::new("config.rs", SAMPLE, threshold);
    loop {
        pass(&mut review);
        if review.score >= review.threshold || review.rounds.len() == max_rounds {
            return review;
        }
        revise(&mut review);
    }
}

/// `source`'s tokens with every `#[doc = ...]` attribute removed, as text: what the
/// compiler sees, documentation aside.
fn code_tokens(source: &str) -> String {
    fn strip(tokens: TokenStream) -> Vec<TokenTree> {
        let mut out: Vec<TokenTree> = Vec::new();
        for token in tokens {
            match token {
                TokenTree::Group(group) => {
                    let is_doc = matches!(
                        group.stream().into_iter().next(),
                        Some(TokenTree::Ident(ident)) if ident == "doc"
                    );
                    if is_doc
                        && matches!(out.last(), Some(TokenTree::Punct(p)) if p.as_char() == '#')
                    {
                        out.pop();
                        continue;
                    }
                    let inner: TokenStream = strip(group.stream()).into_iter().collect();
                    out.push(proc_macro2::Group::new(group.delimiter(), inner).into());
                }
                other => out.push(other),
            }
        }
        out
    }
    let tokens: TokenStream = source.parse().expect("the source lexes");
    strip(tokens)
        .into_iter()
        .collect::<TokenStream>()
        .to_string()
}

#[test]
fn report_after_one_pass() {
    insta::assert_snapshot!(report(&sample()));
}

#[test]
fn functions_and_issues_of_the_sample() {
    let review = sample();
    insta::assert_yaml_snapshot!("sample_functions", review.functions);
    insta::assert_yaml_snapshot!("sample_issues", review.issues);
}

#[test]
fn if_else_if_else_counts_each_if() {
    let source = "fn sign(x: i32) -> i32 { if x > 0 { 1 } else if x < 0 { -1 } else { 0 } }";
    // 1 + if + else if; the else-if chain stays on one level.
    assert_eq!(metrics(source), (3, 1));
}

#[test]
fn match_counts_arms_beyond_the_first_and_guards() {
    let three_arms = "fn f(x: u8) -> u8 { match x { 0 => 1, 1 => 2, _ => 3 } }";
    assert_eq!(metrics(three_arms), (3, 1));
    let guard = "fn f(x: u8) -> u8 { match x { n if n > 9 => 1, _ => 0 } }";
    assert_eq!(metrics(guard), (3, 1));
}

#[test]
fn loops_nest_and_count_once_each() {
    let source = "
fn spin(items: &[u32]) {
    for item in items {
        let mut n = *item;
        while n > 0 {
            loop {
                n -= 1;
                break;
            }
        }
    }
}";
    assert_eq!(metrics(source), (4, 3));
}

#[test]
fn boolean_operators_and_question_marks_count() {
    assert_eq!(
        metrics("fn any(a: bool, b: bool, c: bool) -> bool { a && b || c }"),
        (3, 0)
    );
    let tries =
        "fn next(s: &str) -> Option<u32> { let n: u32 = s.parse().ok()?; n.checked_add(1) }";
    assert_eq!(metrics(tries), (2, 0));
    let let_else = "fn first(v: &[u8]) -> u8 { let Some(x) = v.first() else { return 0 }; *x }";
    assert_eq!(metrics(let_else), (2, 1));
}

#[test]
fn nesting_counts_control_flow_closures_and_blocks() {
    let source = "
fn deep(rows: &[Vec<i32>]) -> i32 {
    let mut total = 0;
    for row in rows {
        if !row.is_empty() {
            match row.first() {
                Some(first) if *first > 0 => {
                    total += row.iter().map(|x| { if *x > 0 { *x } else { 0 } }).sum::<i32>();
                }
                _ => {}
            }
        }
    }
    total
}";
    // for 1, if 2, match 3 (the arm's block is part of it), closure 4, if 5.
    // 1 + for + if + (2 arms - 1) + guard + if = 6.
    assert_eq!(metrics(source), (6, 5));
}

#[test]
fn functions_are_qualified_and_test_code_is_marked() {
    let source = "
/// Documented.
pub fn free() {}
struct Counter;
impl Counter {
    pub(crate) fn bump(&self) {}
}
pub trait Named {
    fn name(&self) -> String;
    fn greet(&self) -> String { format!(\"hi {}\", self.name()) }
}
impl Named for Counter {
    fn name(&self) -> String { String::new() }
}
#[test]
fn top_level_test() {}
#[cfg(test)]
mod tests {
    fn helper() {}
}";
    let functions = measure(source);
    let summary: Vec<(&str, usize, bool, bool, bool)> = functions
        .iter()
        .map(|f| {
            (
                f.name.as_str(),
                f.start_line,
                f.is_public,
                f.has_docs,
                f.in_test,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("free", 3, true, true, false),
            ("Counter::bump", 6, false, false, false),
            ("Named::greet", 10, true, false, false),
            ("Counter::name", 13, false, false, false),
            ("top_level_test", 16, false, false, true),
            ("tests::helper", 19, false, false, true),
        ]
    );
}

#[test]
fn unwrap_is_flagged_in_library_code_only() {
    let source = "
fn library(x: Option<u8>) -> u8 {
    x.unwrap() + x.expect(\"present\")
}
#[test]
fn top_level_test() {
    Some(1).unwrap();
}
#[cfg(test)]
mod tests {
    fn helper() -> u8 {
        Some(1).expect(\"one\")
    }
}";
    assert_eq!(
        issues(source),
        [(3, IssueKind::Unwrap), (3, IssueKind::Unwrap)]
    );
}

#[test]
fn public_items_without_docs_are_flagged() {
    let source = "
pub struct Bare;
/// Documented.
pub struct Documented;
pub(crate) struct Internal;
#[derive(Debug)]
pub enum Kind { A }
pub const LIMIT: u8 = 1;
pub trait Shape {
    /// Documented.
    fn area(&self) -> f64;
    fn name(&self) -> &str;
}
";
    let mut review = Review::new("input.rs", source, DEFAULT_THRESHOLD);
    pass(&mut review);
    let flagged: Vec<(usize, &str)> = review
        .issues
        .iter()
        .map(|issue| (issue.line, issue.subject.as_str()))
        .collect();
    assert_eq!(
        flagged,
        [
            (2, "Bare"),
            (7, "Kind"),
            (8, "LIMIT"),
            (9, "Shape"),
            (12, "Shape::name")
        ]
    );
    assert!(
        review
            .issues
            .iter()
            .all(|issue| issue.kind == IssueKind::MissingDocs)
    );
}

#[test]
fn long_lines_todos_and_trailing_whitespace_are_flagged() {
    let long = format!("// {}", "word ".repeat(20));
    let source = format!(
        "fn f() {{ }}\n{long}\n// TODO: finish\nconst S: &str = \"TODO in a string\";  \n/* FIXME */\n"
    );
    assert_eq!(
        issues(&source),
        [
            (2, IssueKind::LongLine),
            (2, IssueKind::TrailingWhitespace),
            (3, IssueKind::Todo),
            (4, IssueKind::TrailingWhitespace),
            (5, IssueKind::Todo),
        ]
    );
}

#[test]
fn revise_inserts_doc_stubs_with_the_items_indentation() {
    let source = "\
pub struct Plain;

#[derive(Debug)]
pub enum Tagged {
    A,
}

impl Tagged {
    #[inline]
    pub fn get(&self) {}
}
";
    let mut review = Review::new("input.rs", source, DEFAULT_THRESHOLD);
    pass(&mut review);
    assert_eq!(revise(&mut review), 3);
    assert_eq!(
        review.source,
        "\
/// Documentation for `Plain`.
pub struct Plain;

/// Documentation for `Tagged`.
#[derive(Debug)]
pub enum Tagged {
    A,
}

impl Tagged {
    /// Documentation for `get`.
    #[inline]
    pub fn get(&self) {}
}
"
    );
    syn::parse_file(&review.source).expect("the revised source parses");
    assert_eq!(
        review.rounds[0].fixes.get(&IssueKind::MissingDocs),
        Some(&3)
    );
    // Nothing of that kind is left, and nothing else to fix.
    assert_eq!(apply_fix(&mut review, IssueKind::MissingDocs), 0);
    assert_eq!(revise(&mut review), 0);
}

#[test]
fn revise_keeps_whitespace_inside_string_literals() {
    let source = "fn f() -> &'static str {  \n    \"two spaces  \nstay\"\n}\n";
    let mut review = Review::new("input.rs", source, DEFAULT_THRESHOLD);
    pass(&mut review);
    assert_eq!(review.issues.len(), 2, "{:?}", review.issues);
    assert_eq!(revise(&mut review), 1);
    assert_eq!(
        review.source,
        "fn f() -> &'static str {\n    \"two spaces  \nstay\"\n}\n"
    );
}

#[test]
fn revise_wraps_long_comments_but_not_code_or_doc_comments() {
    let words = "word ".repeat(22);
    let source = format!(
        "fn f() {{\n    // {words}end\n    let _s = \"{words}\";\n}}\n/// {words}\nfn g() {{}}\n"
    );
    let mut review = Review::new("input.rs", source.clone(), DEFAULT_THRESHOLD);
    assert_eq!(apply_fix(&mut review, IssueKind::LongLine), 1);
    let lines: Vec<&str> = review.source.lines().collect();
    assert_eq!(
        lines[1],
        format!("    // {}", "word ".repeat(18).trim_end())
    );
    assert_eq!(lines[2], "    // word word word word end");
    assert_eq!(lines[3..], source.lines().collect::<Vec<_>>()[2..]);
}

#[test]
fn each_revise_fixes_one_kind_and_keeps_the_program() {
    let mut review = Review::new("config.rs", SAMPLE, DEFAULT_THRESHOLD);
    let mut applied = Vec::new();
    loop {
        pass(&mut review);
        syn::parse_file(&review.source).expect("the revised source parses");
        assert_eq!(code_tokens(&review.source), code_tokens(SAMPLE));
        if revise(&mut review) == 0 {
            break;
        }
        let fixes = &review.rounds.last().expect("a round").fixes;
        applied.extend(fixes.iter().map(|(kind, count)| (*kind, *count)));
    }
    assert_eq!(
        applied,
        [
            (IssueKind::MissingDocs, 10),
            (IssueKind::TrailingWhitespace, 14),
            (IssueKind::LongLine, 4),
        ]
    );
    // What is left needs a human.
    let remaining: Vec<IssueKind> = review
        .rounds
        .last()
        .expect("a round")
        .issues
        .keys()
        .copied()
        .collect();
    assert_eq!(
        remaining,
        [
            IssueKind::LongFunction,
            IssueKind::HighComplexity,
            IssueKind::DeepNesting,
            IssueKind::Unwrap,
            IssueKind::Todo,
            IssueKind::LongLine,
        ]
    );
    assert!(
        review
            .suggestions
            .iter()
            .all(|suggestion| !suggestion.mechanical)
    );
}

#[test]
fn the_sample_reaches_the_default_threshold_in_three_rounds() {
    let review = run_loop(DEFAULT_THRESHOLD, 5);
    assert_eq!(scores(&review), ["7.0", "7.8", "8.1"]);
    assert!(review.score >= DEFAULT_THRESHOLD);
}

#[test]
fn a_high_threshold_runs_into_the_bound() {
    let review = run_loop(9.5, 5);
    assert_eq!(scores(&review), ["7.0", "7.8", "8.1", "8.2", "8.2"]);
    assert!(review.rounds.iter().all(|round| round.score < 9.5));
}

#[test]
fn unparsable_input_is_an_error_with_its_line() {
    let source = "fn ok() {}\n\nfn broken() {\n    let x = ;\n}\n";
    let mut review = Review::new("broken.rs", source, DEFAULT_THRESHOLD);
    let error: AnalysisError = extract(&mut review).expect_err("the input does not parse");
    let boxed: Box<dyn std::error::Error> = Box::new(error);
    assert_eq!(
        boxed.to_string(),
        "broken.rs:4:13: cannot parse: expected an expression"
    );
    // An unbalanced delimiter is reported where it opens.
    review.source = "fn ok() {}\n\nfn broken( {\n}\n".to_owned();
    let error = extract(&mut review).expect_err("the input does not parse");
    assert_eq!((error.line, error.column), (3, 10), "{error}");
    // So is a file that ends too early.
    review.source = "fn ok() {}\nfn cut()".to_owned();
    let error = extract(&mut review).expect_err("the input does not parse");
    assert_eq!(
        error.to_string(),
        "broken.rs:2:9: cannot parse: unexpected end of input, expected curly braces"
    );
}

#[test]
fn the_review_state_round_trips_through_json() {
    let mut review = run_loop(DEFAULT_THRESHOLD, 5);
    revise(&mut review);
    let json = serde_json::to_string(&review).expect("the state serializes");
    let back: Review = serde_json::from_str(&json).expect("the state deserializes");
    assert_eq!(back, review);
}
