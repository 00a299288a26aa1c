//! The analysis behind the code-review example: plain functions over one serializable
//! [`Review`], which the workflow threads through its steps.
//!
//! The stages run in this order, each reading what the previous ones left in the state:
//!
//! 1. [`extract`] parses `source` with syn and lists every function; it is the only stage
//!    that fails, and only on a file syn cannot parse. Every later stage may assume the
//!    source parses (they re-parse it, since a syntax tree cannot live in a serializable
//!    state, and skip their syntax-based checks if it somehow does not).
//! 2. [`complexity`] measures each function: cyclomatic complexity, nesting depth, length.
//! 3. [`detect`] turns measurements and text rules into [`Issue`]s, sorted by line, then kind.
//! 4. [`suggest`] groups the issues into [`Suggestion`]s and marks which ones [`revise`] can
//!    apply mechanically.
//! 5. [`evaluate`] scores the file from 0 to 10 and records a [`Round`].
//! 6. [`revise`] applies the mechanical fixes of ONE issue kind to `source`, the kind worth
//!    the most score first, and the loop goes back to [`extract`]. Applying one kind per
//!    round makes each round's gain visible; issues that need a human (unwrap calls,
//!    complexity, nesting, TODO comments, long code lines) stay, so the score levels off
//!    below 10 and a high threshold runs the loop into its bound.
//!
//! [`report`] renders the final state for people.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use proc_macro2::{LineColumn, Span};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{Attribute, Block, Expr, Item, Meta, Signature, Type, Visibility};

/// The bundled default input: a configuration-file parser with real problems.
pub(crate) const SAMPLE: &str = include_str!("sample.rs.txt");

/// The score a review has to reach unless the user asks for another (see [`evaluate`]).
pub(crate) const DEFAULT_THRESHOLD: f64 = 8.0;

/// A function longer than this many lines (signature to closing brace) is too long.
pub(crate) const MAX_FUNCTION_LINES: usize = 40;

/// A function nesting control flow deeper than this is too deep (see [`complexity`]).
pub(crate) const MAX_NESTING: u32 = 3;

/// A function with a cyclomatic complexity above this is too complex (see [`complexity`]).
pub(crate) const MAX_COMPLEXITY: u32 = 10;

/// A line longer than this many characters is too long.
pub(crate) const MAX_LINE_LENGTH: usize = 100;

/// How hard issues weigh against the size of the file (see [`evaluate`]): a file with one
/// weighted issue point per `PENALTY_SCALE` lines of code scores 9, with two, 8.
pub(crate) const PENALTY_SCALE: f64 = 16.0;

/// The review of one file, as it travels through the workflow.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(example = Review::new("sample.rs", SAMPLE, DEFAULT_THRESHOLD))]
pub(crate) struct Review {
    /// The file's name, shown in the report.
    pub(crate) path: String,
    /// The current text; [`revise`] rewrites it.
    pub(crate) source: String,
    /// The score to reach, from 0 to 10.
    pub(crate) threshold: f64,
    /// Every function with a body, in source order, with metrics once [`complexity`] ran.
    pub(crate) functions: Vec<Function>,
    /// What [`detect`] found, by line, then kind.
    pub(crate) issues: Vec<Issue>,
    /// What [`suggest`] proposes, by first line, then kind.
    pub(crate) suggestions: Vec<Suggestion>,
    /// The latest score from [`evaluate`], from 0 to 10, rounded to one decimal.
    pub(crate) score: f64,
    /// One entry per [`evaluate`], oldest first.
    pub(crate) rounds: Vec<Round>,
}

impl Review {
    /// A review of `source`, shown as `path`, that passes at `threshold`.
    pub(crate) fn new(path: impl Into<String>, source: impl Into<String>, threshold: f64) -> Self {
        Review {
            path: path.into(),
            source: source.into(),
            threshold,
            ..Review::default()
        }
    }
}

/// One function with a body: a free function, an impl method or a trait default method.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Function {
    /// The name, qualified by its modules and its type or trait: `tests::it_works`,
    /// `Config::parse`, `Source::load`.
    pub(crate) name: String,
    /// The line of the first token after the attributes (`pub`, `async` or `fn`).
    pub(crate) start_line: usize,
    /// The line of the closing brace.
    pub(crate) end_line: usize,
    /// Declared `pub`, or a method of a `pub` trait. Methods of trait impls are not: their
    /// documentation lives on the trait.
    pub(crate) is_public: bool,
    /// Has a doc comment (or a `#[doc = "..."]` attribute).
    pub(crate) has_docs: bool,
    /// Inside a `#[cfg(test)]` item (a test module) or itself a `#[test]` function.
    pub(crate) in_test: bool,
    /// `end_line - start_line + 1`; 0 until [`complexity`] ran.
    pub(crate) lines: usize,
    /// Cyclomatic complexity (see [`complexity`]); 0 until it ran.
    pub(crate) complexity: u32,
    /// Deepest nesting of control flow (see [`complexity`]).
    pub(crate) nesting: u32,
}

/// What an [`Issue`] is about; the order is the tie-break between issues on one line.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum IssueKind {
    /// A function longer than [`MAX_FUNCTION_LINES`].
    LongFunction,
    /// A function more complex than [`MAX_COMPLEXITY`].
    HighComplexity,
    /// A function nesting deeper than [`MAX_NESTING`].
    DeepNesting,
    /// A call of `.unwrap()` or `.expect(..)` outside test code.
    Unwrap,
    /// A `TODO` or `FIXME` comment.
    Todo,
    /// A `pub` item without documentation.
    MissingDocs,
    /// A line longer than [`MAX_LINE_LENGTH`] characters.
    LongLine,
    /// Spaces or tabs at the end of a line.
    TrailingWhitespace,
}

impl IssueKind {
    /// How much one issue of this kind costs (see [`evaluate`]): structure and panics
    /// weigh most, missing docs and TODOs less, cosmetic text issues least.
    pub(crate) fn weight(self) -> f64 {
        match self {
            IssueKind::HighComplexity => 3.0,
            IssueKind::LongFunction | IssueKind::DeepNesting | IssueKind::Unwrap => 2.0,
            IssueKind::Todo | IssueKind::MissingDocs => 1.0,
            IssueKind::LongLine => 0.5,
            IssueKind::TrailingWhitespace => 0.25,
        }
    }

    /// A short name for reports: `long function`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            IssueKind::LongFunction => "long function",
            IssueKind::HighComplexity => "high complexity",
            IssueKind::DeepNesting => "deep nesting",
            IssueKind::Unwrap => "unwrap",
            IssueKind::Todo => "todo",
            IssueKind::MissingDocs => "missing docs",
            IssueKind::LongLine => "long line",
            IssueKind::TrailingWhitespace => "trailing whitespace",
        }
    }
}

/// One problem at one line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Issue {
    /// Where: a function's start line, the line of a call, comment or item, or the line itself.
    pub(crate) line: usize,
    /// What kind of problem.
    pub(crate) kind: IssueKind,
    /// What it is about: the function (long, complex, nested), the method (`unwrap`,
    /// `expect`), the marker (`TODO`, `FIXME`) or the item name (missing docs); empty for
    /// the line rules.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) subject: String,
    /// A sentence for people.
    pub(crate) message: String,
}

/// One concrete proposal covering a group of issues.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Suggestion {
    /// The kind of the issues it covers (for a function, the first of its kinds).
    pub(crate) kind: IssueKind,
    /// The lines of the issues it covers.
    pub(crate) lines: Vec<usize>,
    /// What to do.
    pub(crate) text: String,
    /// Whether [`revise`] applies it; otherwise it needs a human.
    pub(crate) mechanical: bool,
}

/// One pass of the review loop: what [`evaluate`] saw, and what [`revise`] did next.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Round {
    /// 1 for the first evaluation.
    pub(crate) number: usize,
    /// The score of this round.
    pub(crate) score: f64,
    /// How many issues of each kind there were.
    pub(crate) issues: BTreeMap<IssueKind, usize>,
    /// How many fixes of each kind the following [`revise`] applied; empty when none ran.
    pub(crate) fixes: BTreeMap<IssueKind, usize>,
}

/// The source does not parse as a Rust file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AnalysisError {
    /// The file's name.
    pub(crate) path: String,
    /// 1-based line of the offending token.
    pub(crate) line: usize,
    /// 1-based column (in characters) of the offending token.
    pub(crate) column: usize,
    /// syn's message, such as "expected `;`".
    pub(crate) message: String,
}

impl fmt::Display for AnalysisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let AnalysisError {
            path,
            line,
            column,
            message,
        } = self;
        write!(f, "{path}:{line}:{column}: cannot parse: {message}")
    }
}

impl std::error::Error for AnalysisError {}

/// Parses `source` and lists every function with a body into `functions` (without
/// metrics; see [`complexity`]).
///
/// Functions are free functions, methods of inherent and trait impls (`Type::method`),
/// trait default methods (`Trait::method`) and functions nested in bodies, in source
/// order. Code inside macro invocations is not seen.
pub(crate) fn extract(review: &mut Review) -> Result<(), AnalysisError> {
    let file = syn::parse_file(&review.source).map_err(|error| {
        let message = error.to_string();
        let (line, column) = if message.starts_with("unexpected end of input") {
            // syn gives this error the call-site span, which reads as line 1, column 0
            // outside a proc macro; the problem is at the end of the file.
            let last = review.source.rsplit('\n').next().unwrap_or_default();
            let line = review.source.matches('\n').count() + 1;
            (line, last.chars().count())
        } else {
            let start = error.span().start();
            (start.line, start.column)
        };
        AnalysisError {
            path: review.path.clone(),
            line,
            column: column + 1,
            message,
        }
    })?;
    review.functions = Scan::file(&file)
        .functions
        .into_iter()
        .map(|site| site.function)
        .collect();
    Ok(())
}

/// Lists the functions again, now with their metrics.
///
/// - **Cyclomatic complexity** is 1, plus 1 for each `if` (each `else if` is one more `if`;
///   `if let` included), each `let ... else`, each `while` (and `while let`), `for` and
///   `loop`, each match guard, each `&&` and `||`, each `?`, and, for a `match` with n arms,
///   n - 1. A plain `else` adds nothing. Closures count towards the function they are in;
///   functions nested in the body count on their own.
/// - **Nesting** is the deepest level of control flow in the body, which is level 0. `if`,
///   `else`, `match`, `while`, `for`, `loop`, `let ... else`, closures and bare `{ }`
///   blocks each open one level for their body; an `else if` stays on the level of its
///   `if`, and a match arm's `{ }` is part of the match's level, not one more.
/// - **Length** is `end_line - start_line + 1`.
///
/// Macro arguments (`assert!(a && b)`) are not parsed and count for nothing. If the
/// source does not parse, the list is left as it was.
pub(crate) fn complexity(review: &mut Review) {
    let Ok(file) = syn::parse_file(&review.source) else {
        return;
    };
    review.functions = Scan::file(&file)
        .functions
        .into_iter()
        .map(|site| {
            let metrics = Metrics::of(site.body);
            Function {
                lines: site.function.end_line + 1 - site.function.start_line,
                complexity: metrics.complexity,
                nesting: metrics.max_depth,
                ..site.function
            }
        })
        .collect();
}

/// Finds the issues, sorted by line, then kind (the order of [`IssueKind`]).
///
/// - From the metrics of non-test functions: longer than [`MAX_FUNCTION_LINES`], more
///   complex than [`MAX_COMPLEXITY`], nested deeper than [`MAX_NESTING`].
/// - From the syntax tree: each `.unwrap()` and `.expect(..)` call outside test code, and
///   each `pub` item outside test code and function bodies without documentation:
///   functions, methods of inherent impls, structs, enums, unions, traits (and every
///   method of a `pub` trait), consts, statics, type aliases and inline modules. Fields,
///   variants and `pub use` are not checked.
/// - From the text, test code included: `TODO` and `FIXME` in comments, lines over
///   [`MAX_LINE_LENGTH`] characters, trailing spaces or tabs.
pub(crate) fn detect(review: &mut Review) {
    let mut issues = Vec::new();
    for function in review.functions.iter().filter(|f| !f.in_test) {
        let name = &function.name;
        let mut push = |kind, message: String| {
            issues.push(Issue {
                line: function.start_line,
                kind,
                subject: name.clone(),
                message,
            });
        };
        if function.lines > MAX_FUNCTION_LINES {
            let lines = function.lines;
            push(
                IssueKind::LongFunction,
                format!("`{name}` is {lines} lines long (limit {MAX_FUNCTION_LINES})"),
            );
        }
        if function.complexity > MAX_COMPLEXITY {
            let complexity = function.complexity;
            push(
                IssueKind::HighComplexity,
                format!("`{name}` has complexity {complexity} (limit {MAX_COMPLEXITY})"),
            );
        }
        if function.nesting > MAX_NESTING {
            let nesting = function.nesting;
            push(
                IssueKind::DeepNesting,
                format!("`{name}` nests {nesting} levels deep (limit {MAX_NESTING})"),
            );
        }
    }
    if let Ok(file) = syn::parse_file(&review.source) {
        let scan = Scan::file(&file);
        for call in scan.calls {
            let method = match call.method.as_str() {
                "unwrap" => "`.unwrap()`",
                _ => "`.expect(..)`",
            };
            let place = call
                .function
                .map_or_else(String::new, |name| format!(" in `{name}`"));
            issues.push(Issue {
                line: call.line,
                kind: IssueKind::Unwrap,
                subject: call.method,
                message: format!("{method}{place} panics instead of returning an error"),
            });
        }
        for item in scan.items.into_iter().filter(|item| !item.has_docs) {
            issues.push(Issue {
                line: item.line,
                kind: IssueKind::MissingDocs,
                message: format!("pub {} `{}` has no doc comment", item.label, item.name),
                subject: item.name,
            });
        }
    }
    let lexed = lex(&review.source);
    for comment in &lexed.comments {
        if let Some((marker, note)) = todo_note(&comment.text) {
            issues.push(Issue {
                line: comment.line,
                kind: IssueKind::Todo,
                subject: marker.to_owned(),
                message: format!("{marker} comment: {note}"),
            });
        }
    }
    for (index, text) in source_lines(&review.source).enumerate() {
        let line = index + 1;
        let length = text.chars().count();
        if length > MAX_LINE_LENGTH {
            issues.push(Issue {
                line,
                kind: IssueKind::LongLine,
                subject: String::new(),
                message: format!("{length} characters (limit {MAX_LINE_LENGTH})"),
            });
        }
        if text.ends_with([' ', '\t']) {
            issues.push(Issue {
                line,
                kind: IssueKind::TrailingWhitespace,
                subject: String::new(),
                message: "trailing whitespace".to_owned(),
            });
        }
    }
    // Stable: issues of one kind on one line keep their source order.
    issues.sort_by_key(|issue| (issue.line, issue.kind));
    review.issues = issues;
}

/// Groups the issues into suggestions, sorted by first line, then kind:
///
/// - one per function that is too long, complex or nested ("split ... into smaller
///   functions", "flatten ...");
/// - one per `.unwrap()`/`.expect(..)` call and one per TODO comment;
/// - one for all missing docs (mechanical: [`revise`] inserts neutral doc stubs, which a
///   human should then fill in), one for all trailing whitespace (mechanical);
/// - for long lines, one for the `//` comment lines [`revise`] can re-wrap (mechanical)
///   and one for the rest (code, doc comments, unbreakable words), which needs a human.
pub(crate) fn suggest(review: &mut Review) {
    let mut suggestions = Vec::new();
    for function in &review.functions {
        if let Some(suggestion) = restructure(function, &review.issues) {
            suggestions.push(suggestion);
        }
    }
    let mut missing_docs = Vec::new();
    let mut trailing = Vec::new();
    let mut long_comments = Vec::new();
    let mut long_code = Vec::new();
    let lines: Vec<&str> = source_lines(&review.source).collect();
    let lexed = lex(&review.source);
    for issue in &review.issues {
        let line = issue.line;
        match issue.kind {
            IssueKind::Unwrap => suggestions.push(Suggestion {
                kind: IssueKind::Unwrap,
                lines: vec![line],
                text: format!(
                    "replace `.{}` at line {line} with `?` and a descriptive error",
                    if issue.subject == "unwrap" {
                        "unwrap()"
                    } else {
                        "expect(..)"
                    }
                ),
                mechanical: false,
            }),
            IssueKind::Todo => suggestions.push(Suggestion {
                kind: IssueKind::Todo,
                lines: vec![line],
                text: format!(
                    "resolve the {} at line {line}, or move it to the issue tracker",
                    issue.subject
                ),
                mechanical: false,
            }),
            IssueKind::MissingDocs => missing_docs.push(issue),
            IssueKind::TrailingWhitespace => trailing.push(line),
            IssueKind::LongLine => {
                let text = lines.get(line.saturating_sub(1)).copied();
                if wrap_comment(text.unwrap_or_default(), line, &lexed).is_some() {
                    long_comments.push(line);
                } else {
                    long_code.push(line);
                }
            }
            IssueKind::LongFunction | IssueKind::HighComplexity | IssueKind::DeepNesting => {}
        }
    }
    let names: Vec<String> = missing_docs
        .iter()
        .map(|issue| format!("`{}`", issue.subject))
        .collect();
    let docs = missing_docs.iter().map(|issue| issue.line).collect();
    let plural = |lines: &[usize], one, many| if lines.len() == 1 { one } else { many };
    suggestions.extend(
        [
            group(IssueKind::MissingDocs, docs, true, |lines| {
                let items = plural(lines, "item", "items");
                let count = lines.len();
                format!(
                    "document the {count} public {items} without docs: {}",
                    names.join(", ")
                )
            }),
            group(IssueKind::TrailingWhitespace, trailing, true, |lines| {
                format!("remove trailing whitespace on {}", line_list(lines))
            }),
            group(IssueKind::LongLine, long_comments, true, |lines| {
                let comments = plural(lines, "comment", "comments");
                let at = line_list(lines);
                format!("wrap the {comments} on {at} at {MAX_LINE_LENGTH} characters")
            }),
            group(IssueKind::LongLine, long_code, false, |lines| {
                let at = line_list(lines);
                format!("break {at} (over {MAX_LINE_LENGTH} characters) by hand")
            }),
        ]
        .into_iter()
        .flatten(),
    );
    suggestions.sort_by_key(|suggestion| (suggestion.lines.first().copied(), suggestion.kind));
    review.suggestions = suggestions;
}

/// Scores the issues, records a [`Round`] and returns the score.
///
/// ```text
/// penalty = sum of IssueKind::weight over the issues
/// score   = clamp(10 - PENALTY_SCALE * penalty / code_lines, 0, 10), rounded to 0.1
/// ```
///
/// `code_lines` counts the lines holding code, that is anything but whitespace and
/// comments (at least 1), so the same issues weigh less in a bigger file, and adding doc
/// comments or re-wrapping comments does not dilute the penalty.
pub(crate) fn evaluate(review: &mut Review) -> f64 {
    let penalty: f64 = review.issues.iter().map(|issue| issue.kind.weight()).sum();
    let code_lines = lex(&review.source).code.len().max(1);
    let raw = 10.0 - PENALTY_SCALE * penalty / count(code_lines);
    let score = (raw.clamp(0.0, 10.0) * 10.0).round() / 10.0;
    let mut issues = BTreeMap::new();
    for issue in &review.issues {
        *issues.entry(issue.kind).or_insert(0) += 1;
    }
    review.score = score;
    review.rounds.push(Round {
        number: review.rounds.len() + 1,
        score,
        issues,
        fixes: BTreeMap::new(),
    });
    score
}

/// Applies the mechanical fixes of one issue kind to `source`, records them in the last
/// [`Round`] and returns how many it applied (0 when nothing is left to fix).
///
/// The kind is the one whose fixes gain the most score (count times
/// [`IssueKind::weight`]; ties go to the earlier kind), so over the rounds the score
/// climbs in steps: doc stubs, then trailing whitespace, then comment wrapping on the
/// bundled sample. See [`apply_fix`] for what each fix does; every fix keeps the
/// program's meaning and its parse.
pub(crate) fn revise(review: &mut Review) -> usize {
    let mut best: Option<(f64, IssueKind, String, usize)> = None;
    for kind in FIXABLE {
        if let Some((source, fixes)) = fixed(&review.source, kind) {
            let gain = count(fixes) * kind.weight();
            if best.as_ref().is_none_or(|(most, ..)| gain > *most) {
                best = Some((gain, kind, source, fixes));
            }
        }
    }
    let Some((_, kind, source, fixes)) = best else {
        return 0;
    };
    review.source = source;
    record_fixes(review, kind, fixes);
    fixes
}

/// Applies every mechanical fix of `kind` to `source`, records them in the last [`Round`]
/// and returns how many it applied; 0 for kinds that need a human and when nothing is left.
///
/// - [`IssueKind::MissingDocs`]: inserts ``/// Documentation for `name`.`` above each
///   undocumented item [`detect`] reports (above its attributes, with the item's
///   indentation), when the item starts its line.
/// - [`IssueKind::TrailingWhitespace`]: strips it, except where the line break is inside a
///   string literal, whose value would change.
/// - [`IssueKind::LongLine`]: re-wraps long `//` comment lines that stand alone on their
///   line, at word boundaries. Doc comments are left alone: in Markdown a line break can
///   matter (tables, code blocks).
#[allow(dead_code)] // The example applies fixes through `revise`; tests pick a kind.
pub(crate) fn apply_fix(review: &mut Review, kind: IssueKind) -> usize {
    let Some((source, fixes)) = fixed(&review.source, kind) else {
        return 0;
    };
    review.source = source;
    record_fixes(review, kind, fixes);
    fixes
}

/// Renders the review for people: the file, the score against the threshold, the rounds,
/// a table of the functions, the remaining issues by line and the suggestions.
pub(crate) fn report(review: &Review) -> String {
    let mut out = String::new();
    // Writing to a `String` cannot fail.
    let _ = write_report(&mut out, review);
    out
}

/// The body of [`report`].
fn write_report(out: &mut String, review: &Review) -> fmt::Result {
    let verdict = if review.score >= review.threshold {
        "reached"
    } else {
        "not reached"
    };
    writeln!(out, "Code review of {}", review.path)?;
    writeln!(
        out,
        "score {:.1}/10, threshold {:.1}: {verdict}",
        review.score, review.threshold
    )?;
    writeln!(out, "\nRounds")?;
    writeln!(out, "  round  score  issues  revise applied")?;
    for round in &review.rounds {
        let issues: usize = round.issues.values().sum();
        let fixes: Vec<String> = round
            .fixes
            .iter()
            .map(|(kind, count)| format!("{count} {}", kind.label()))
            .collect();
        let fixes = if fixes.is_empty() {
            "-".to_owned()
        } else {
            fixes.join(", ")
        };
        let (number, score) = (round.number, round.score);
        writeln!(out, "  {number:>5}  {score:>5.1}  {issues:>6}  {fixes}")?;
    }
    let width = review
        .functions
        .iter()
        .map(|function| function.name.len())
        .fold("function".len(), usize::max);
    writeln!(out, "\nFunctions ({})", review.functions.len())?;
    writeln!(
        out,
        "  {:<width$}  {:>7}  {:>5}  {:>10}  {:>7}",
        "function", "at", "lines", "complexity", "nesting"
    )?;
    for function in &review.functions {
        let span = format!("{}-{}", function.start_line, function.end_line);
        let test = if function.in_test { "  (test)" } else { "" };
        writeln!(
            out,
            "  {:<width$}  {span:>7}  {:>5}  {:>10}  {:>7}{test}",
            function.name, function.lines, function.complexity, function.nesting
        )?;
    }
    writeln!(out, "\nIssues ({})", review.issues.len())?;
    for issue in &review.issues {
        let (line, kind) = (issue.line, issue.kind.label());
        writeln!(out, "  line {line:>4}  {kind:<19}  {}", issue.message)?;
    }
    writeln!(out, "\nSuggestions ({})", review.suggestions.len())?;
    for suggestion in &review.suggestions {
        let how = if suggestion.mechanical {
            "auto "
        } else {
            "human"
        };
        writeln!(out, "  [{how}] {}", suggestion.text)?;
    }
    Ok(())
}

/// The kinds [`apply_fix`] can fix, in the order [`revise`] breaks ties.
const FIXABLE: [IssueKind; 3] = [
    IssueKind::MissingDocs,
    IssueKind::TrailingWhitespace,
    IssueKind::LongLine,
];

/// Adds `fixes` of `kind` to the last round, if any.
fn record_fixes(review: &mut Review, kind: IssueKind, fixes: usize) {
    if let Some(round) = review.rounds.last_mut() {
        *round.fixes.entry(kind).or_insert(0) += fixes;
    }
}

/// `source` with every mechanical fix of `kind` applied, and how many; `None` when there
/// is nothing to fix (or the kind is not mechanical).
fn fixed(source: &str, kind: IssueKind) -> Option<(String, usize)> {
    let lexed = lex(source);
    let mut fixes = 0;
    let mut out: Vec<String> = Vec::new();
    match kind {
        IssueKind::MissingDocs => {
            let file = syn::parse_file(source).ok()?;
            // Line number -> the stub to insert above it. At most one item starts a line.
            let mut stubs: BTreeMap<usize, String> = BTreeMap::new();
            let lines: Vec<&str> = source_lines(source).collect();
            for item in Scan::file(&file).items.iter().filter(|item| !item.has_docs) {
                let text = lines.get(item.insert.line.saturating_sub(1)).copied();
                let text = text.unwrap_or_default();
                let indent: String = text.chars().take(item.insert.column).collect();
                // The item must start its line, or the stub would document what precedes it.
                if indent.chars().all(char::is_whitespace) {
                    let name = item.name.rsplit("::").next().unwrap_or(&item.name);
                    let stub = format!("{indent}/// Documentation for `{name}`.");
                    stubs.insert(item.insert.line, stub);
                }
            }
            for (index, text) in source_lines(source).enumerate() {
                if let Some(stub) = stubs.remove(&(index + 1)) {
                    fixes += 1;
                    out.push(stub);
                }
                out.push(text.to_owned());
            }
        }
        IssueKind::TrailingWhitespace => {
            for (index, text) in source_lines(source).enumerate() {
                let trimmed = text.trim_end_matches([' ', '\t']);
                if trimmed.len() < text.len() && !lexed.open.contains(&(index + 1)) {
                    fixes += 1;
                    out.push(trimmed.to_owned());
                } else {
                    out.push(text.to_owned());
                }
            }
        }
        IssueKind::LongLine => {
            for (index, text) in source_lines(source).enumerate() {
                match wrap_comment(text, index + 1, &lexed) {
                    Some(wrapped) => {
                        fixes += 1;
                        out.extend(wrapped);
                    }
                    None => out.push(text.to_owned()),
                }
            }
        }
        _ => return None,
    }
    if fixes == 0 {
        return None;
    }
    let newline = if source.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut text = out.join(newline);
    if source.ends_with('\n') {
        text.push_str(newline);
    }
    Some((text, fixes))
}

/// The lines of `source` without their line breaks, numbered from 1 by `enumerate() + 1`
/// like proc-macro2's line numbers.
fn source_lines(source: &str) -> impl Iterator<Item = &str> {
    source.lines()
}

/// `text` (line `line`) as several lines of at most [`MAX_LINE_LENGTH`] characters, if it is
/// a long `//` comment (not a doc comment) alone on its line whose words fit.
fn wrap_comment(text: &str, line: usize, lexed: &Lexed) -> Option<Vec<String>> {
    if text.chars().count() <= MAX_LINE_LENGTH {
        return None;
    }
    let indent_len = text.len() - text.trim_start().len();
    let indent = &text[..indent_len];
    let column = indent.chars().count();
    let body = text[indent_len..].strip_prefix("//")?;
    // A doc comment (`///`, `//!`) may be Markdown where line breaks matter; `////` is a plain
    // comment, but rare enough to leave alone too.
    if body.starts_with(['/', '!']) {
        return None;
    }
    // Only a comment the lexer saw at the start of the line, so never text in a string.
    let alone = lexed
        .comments
        .iter()
        .any(|c| c.line == line && c.column == column && c.double_slash);
    if !alone {
        return None;
    }
    let prefix = format!("{indent}// ");
    let room = MAX_LINE_LENGTH.checked_sub(prefix.chars().count())?;
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in body.split_whitespace() {
        let needed = word.chars().count();
        if needed > room {
            return None;
        }
        if !current.is_empty() && current.chars().count() + 1 + needed > room {
            lines.push(format!("{prefix}{current}"));
            current.clear();
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    lines.push(format!("{prefix}{current}"));
    Some(lines)
}

/// The suggestion for one function that is too long, too complex or too deeply nested.
fn restructure(function: &Function, issues: &[Issue]) -> Option<Suggestion> {
    let kinds: Vec<IssueKind> = issues
        .iter()
        .filter(|issue| {
            issue.line == function.start_line
                && issue.subject == function.name
                && matches!(
                    issue.kind,
                    IssueKind::LongFunction | IssueKind::HighComplexity | IssueKind::DeepNesting
                )
        })
        .map(|issue| issue.kind)
        .collect();
    let first = *kinds.first()?;
    let name = &function.name;
    let split =
        kinds.contains(&IssueKind::LongFunction) || kinds.contains(&IssueKind::HighComplexity);
    let nested = kinds.contains(&IssueKind::DeepNesting);
    let text = match (split, nested) {
        (true, true) => format!(
            "split `{name}` ({} lines, complexity {}) into smaller functions and flatten its \
             nesting (depth {}) with early returns",
            function.lines, function.complexity, function.nesting
        ),
        (true, false) => format!(
            "split `{name}` ({} lines, complexity {}) into smaller functions",
            function.lines, function.complexity
        ),
        _ => format!(
            "flatten `{name}` (nesting depth {}) with early returns, `continue` or a helper \
             function",
            function.nesting
        ),
    };
    Some(Suggestion {
        kind: first,
        lines: vec![function.start_line],
        text,
        mechanical: false,
    })
}

/// One suggestion for all the issues of `kind` on `lines`; none if there are none.
fn group(
    kind: IssueKind,
    lines: Vec<usize>,
    mechanical: bool,
    text: impl FnOnce(&[usize]) -> String,
) -> Option<Suggestion> {
    (!lines.is_empty()).then(|| Suggestion {
        kind,
        text: text(&lines),
        lines,
        mechanical,
    })
}

/// "line 3" or "lines 3, 8, 12".
fn line_list(lines: &[usize]) -> String {
    let numbers: Vec<String> = lines.iter().map(ToString::to_string).collect();
    match numbers.as_slice() {
        [one] => format!("line {one}"),
        _ => format!("lines {}", numbers.join(", ")),
    }
}

/// The marker (`TODO` or `FIXME`) in a comment and the note after it, shortened.
fn todo_note(comment: &str) -> Option<(&'static str, String)> {
    let (marker, at) = ["TODO", "FIXME"]
        .into_iter()
        .filter_map(|marker| comment.find(marker).map(|at| (marker, at)))
        .min_by_key(|&(_, at)| at)?;
    let note = comment[at + marker.len()..]
        .trim_start_matches([':', ' ', '(', ')'])
        .trim();
    let mut short: String = note.chars().take(60).collect();
    if short.len() < note.len() {
        short.push_str("...");
    }
    Some((marker, short))
}

/// `n` as a float, for the score arithmetic.
fn count(n: usize) -> f64 {
    u32::try_from(n).map_or(f64::from(u32::MAX), f64::from)
}

/// A function found by [`Scan`], with its body for [`Metrics`].
struct FnSite<'ast> {
    /// The function, without metrics.
    function: Function,
    /// Its body.
    body: &'ast Block,
}

/// A call of `.unwrap()` or `.expect(..)` outside test code.
struct Call {
    /// The line of the method name.
    line: usize,
    /// `unwrap` or `expect`.
    method: String,
    /// The enclosing function, if any.
    function: Option<String>,
}

/// A `pub` item outside test code and function bodies.
struct PubItem {
    /// `struct`, `fn`, ...
    label: &'static str,
    /// Qualified like [`Function::name`].
    name: String,
    /// The line of its first token after the attributes.
    line: usize,
    /// Where a doc stub goes: its first outer attribute, or its first token.
    insert: LineColumn,
    /// Whether it has a doc comment.
    has_docs: bool,
}

/// The impl or trait the visitor is in.
struct Owner {
    /// The type's or trait's name.
    name: String,
    /// A `pub` trait: its methods are public.
    public_trait: bool,
    /// An `impl Trait for Type`: its methods' docs live on the trait.
    trait_impl: bool,
}

/// One walk over a file collecting functions, unwrap calls and public items, with the
/// context they need: module path, impl or trait, test code, function bodies.
#[derive(Default)]
struct Scan<'ast> {
    /// Enclosing inline modules.
    modules: Vec<String>,
    /// The enclosing impl or trait, if its items are being visited.
    owner: Option<Owner>,
    /// Inside `#[cfg(test)]` or `#[test]` code.
    in_test: bool,
    /// The enclosing function, if inside a body.
    current: Option<String>,
    /// Functions found so far.
    functions: Vec<FnSite<'ast>>,
    /// Unwrap calls found so far.
    calls: Vec<Call>,
    /// Public items found so far.
    items: Vec<PubItem>,
}

impl<'ast> Scan<'ast> {
    /// Walks `file`.
    fn file(file: &'ast syn::File) -> Self {
        let mut scan = Scan::default();
        scan.visit_file(file);
        scan
    }

    /// `ident` qualified by the modules and the owner.
    fn qualify(&self, ident: &syn::Ident) -> String {
        let mut parts = self.modules.clone();
        if let Some(owner) = &self.owner {
            parts.push(owner.name.clone());
        }
        parts.push(ident.to_string());
        parts.join("::")
    }

    /// Records a public item unless it is test code or inside a body.
    fn public_item(
        &mut self,
        label: &'static str,
        ident: &syn::Ident,
        attrs: &[Attribute],
        first: Span,
    ) {
        if self.in_test || self.current.is_some() {
            return;
        }
        let insert = attrs
            .iter()
            .find(|attr| matches!(attr.style, syn::AttrStyle::Outer))
            .map_or(first, Spanned::span)
            .start();
        self.items.push(PubItem {
            label,
            name: self.qualify(ident),
            line: first.start().line,
            insert,
            has_docs: has_docs(attrs),
        });
    }

    /// Records a function and walks its body in the function's context.
    fn function(
        &mut self,
        attrs: &[Attribute],
        is_public: bool,
        sig: &'ast Signature,
        first: Span,
        body: &'ast Block,
    ) {
        let in_test = self.in_test || is_test_code(attrs);
        let name = self.qualify(&sig.ident);
        self.functions.push(FnSite {
            function: Function {
                name: name.clone(),
                start_line: first.start().line,
                end_line: body.brace_token.span.close().end().line,
                is_public,
                has_docs: has_docs(attrs),
                in_test,
                ..Function::default()
            },
            body,
        });
        let outer = (self.owner.take(), self.in_test, self.current.replace(name));
        self.in_test = in_test;
        self.visit_block(body);
        (self.owner, self.in_test, self.current) = outer;
    }
}

impl<'ast> Visit<'ast> for Scan<'ast> {
    fn visit_item(&mut self, item: &'ast Item) {
        let attrs = item_attrs(item);
        let outer_test = self.in_test;
        self.in_test |= is_test_code(attrs);
        if let Some((vis, ident, label)) = public_parts(item)
            && matches!(vis, Visibility::Public(_))
        {
            self.public_item(label, ident, attrs, vis.span());
        }
        match item {
            Item::Mod(module) => {
                self.modules.push(module.ident.to_string());
                visit::visit_item_mod(self, module);
                self.modules.pop();
            }
            Item::Impl(imp) => {
                let outer = self.owner.replace(Owner {
                    name: type_name(&imp.self_ty),
                    public_trait: false,
                    trait_impl: imp.trait_.is_some(),
                });
                visit::visit_item_impl(self, imp);
                self.owner = outer;
            }
            Item::Trait(tr) => {
                let outer = self.owner.replace(Owner {
                    name: tr.ident.to_string(),
                    public_trait: matches!(tr.vis, Visibility::Public(_)),
                    trait_impl: false,
                });
                visit::visit_item_trait(self, tr);
                self.owner = outer;
            }
            _ => visit::visit_item(self, item),
        }
        self.in_test = outer_test;
    }

    fn visit_item_fn(&mut self, node: &'ast syn::ItemFn) {
        let first = first_token(&node.vis, &node.sig);
        let is_public = matches!(node.vis, Visibility::Public(_));
        self.function(&node.attrs, is_public, &node.sig, first, &node.block);
    }

    fn visit_impl_item_fn(&mut self, node: &'ast syn::ImplItemFn) {
        let first = first_token(&node.vis, &node.sig);
        let is_public = matches!(node.vis, Visibility::Public(_));
        let inherent = self.owner.as_ref().is_some_and(|owner| !owner.trait_impl);
        if is_public && inherent {
            self.public_item("fn", &node.sig.ident, &node.attrs, first);
        }
        self.function(&node.attrs, is_public, &node.sig, first, &node.block);
    }

    fn visit_trait_item_fn(&mut self, node: &'ast syn::TraitItemFn) {
        let first = node.sig.span();
        let is_public = self.owner.as_ref().is_some_and(|owner| owner.public_trait);
        if is_public {
            self.public_item("fn", &node.sig.ident, &node.attrs, first);
        }
        if let Some(body) = &node.default {
            self.function(&node.attrs, is_public, &node.sig, first, body);
        }
    }

    fn visit_expr_method_call(&mut self, node: &'ast syn::ExprMethodCall) {
        let arity = match node.method.to_string().as_str() {
            "unwrap" => Some(0),
            "expect" => Some(1),
            _ => None,
        };
        if !self.in_test && arity == Some(node.args.len()) {
            self.calls.push(Call {
                line: node.method.span().start().line,
                method: node.method.to_string(),
                function: self.current.clone(),
            });
        }
        visit::visit_expr_method_call(self, node);
    }
}

/// The span of an item's first token after its attributes: `pub`, or the signature.
fn first_token(vis: &Visibility, sig: &Signature) -> Span {
    match vis {
        Visibility::Inherited => sig.span(),
        _ => vis.span(),
    }
}

/// The attributes of any item.
fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// Visibility, name and label of the items [`detect`] checks for docs. Inherent methods
/// and trait methods are handled by their visitors.
fn public_parts(item: &Item) -> Option<(&Visibility, &syn::Ident, &'static str)> {
    match item {
        Item::Const(i) => Some((&i.vis, &i.ident, "const")),
        Item::Enum(i) => Some((&i.vis, &i.ident, "enum")),
        Item::Fn(i) => Some((&i.vis, &i.sig.ident, "fn")),
        // `mod name;` has its docs in its own file, which this review cannot see.
        Item::Mod(i) if i.content.is_some() => Some((&i.vis, &i.ident, "mod")),
        Item::Static(i) => Some((&i.vis, &i.ident, "static")),
        Item::Struct(i) => Some((&i.vis, &i.ident, "struct")),
        Item::Trait(i) => Some((&i.vis, &i.ident, "trait")),
        Item::Type(i) => Some((&i.vis, &i.ident, "type")),
        Item::Union(i) => Some((&i.vis, &i.ident, "union")),
        _ => None,
    }
}

/// Whether the attributes include documentation: `///`, `/** */` or `#[doc = "..."]`.
fn has_docs(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .any(|attr| attr.path().is_ident("doc") && matches!(attr.meta, Meta::NameValue(_)))
}

/// Whether the attributes make an item test code: `#[test]` (or `#[tokio::test]` and
/// the like), or a `#[cfg(..)]` naming `test` without `not`.
fn is_test_code(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        let path = attr.path();
        if path.is_ident("cfg") {
            let Meta::List(list) = &attr.meta else {
                return false;
            };
            let text = list.tokens.to_string();
            let words: Vec<&str> = text
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .collect();
            words.contains(&"test") && !words.contains(&"not")
        } else {
            path.segments
                .last()
                .is_some_and(|last| last.ident == "test")
        }
    })
}

/// The name an impl's methods are qualified with: the last path segment of the self
/// type, through references and parentheses; `_` for other types.
fn type_name(ty: &Type) -> String {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .map_or_else(|| "_".to_owned(), |last| last.ident.to_string()),
        Type::Reference(reference) => type_name(&reference.elem),
        Type::Paren(paren) => type_name(&paren.elem),
        Type::Group(group) => type_name(&group.elem),
        _ => "_".to_owned(),
    }
}

/// Complexity and nesting of one body (see [`complexity`]).
struct Metrics {
    /// Cyclomatic complexity so far.
    complexity: u32,
    /// The current level.
    depth: u32,
    /// The deepest level seen.
    max_depth: u32,
}

impl Metrics {
    /// Measures a function body.
    fn of(body: &Block) -> Self {
        let mut metrics = Metrics {
            complexity: 1,
            depth: 0,
            max_depth: 0,
        };
        metrics.contents(body);
        metrics
    }

    /// Runs `walk` one level deeper.
    fn nested(&mut self, walk: impl FnOnce(&mut Self)) {
        self.depth += 1;
        self.max_depth = self.max_depth.max(self.depth);
        walk(self);
        self.depth -= 1;
    }

    /// The statements of a block, on the current level.
    fn contents(&mut self, block: &Block) {
        for stmt in &block.stmts {
            self.visit_stmt(stmt);
        }
    }

    /// A body that is a level already (match arm, closure): a plain `{ }` adds none.
    fn body(&mut self, expr: &Expr) {
        match expr {
            Expr::Block(block) if block.label.is_none() => self.contents(&block.block),
            _ => self.visit_expr(expr),
        }
    }
}

impl<'ast> Visit<'ast> for Metrics {
    fn visit_item(&mut self, _: &'ast Item) {
        // A nested function is measured on its own.
    }

    fn visit_expr_if(&mut self, node: &'ast syn::ExprIf) {
        self.complexity += 1;
        self.visit_expr(&node.cond);
        self.nested(|m| m.contents(&node.then_branch));
        if let Some((_, otherwise)) = &node.else_branch {
            match &**otherwise {
                Expr::If(else_if) => self.visit_expr_if(else_if),
                other => self.nested(|m| m.body(other)),
            }
        }
    }

    fn visit_expr_match(&mut self, node: &'ast syn::ExprMatch) {
        let arms = u32::try_from(node.arms.len()).unwrap_or(u32::MAX);
        self.complexity += arms.saturating_sub(1);
        self.visit_expr(&node.expr);
        self.nested(|m| {
            for arm in &node.arms {
                m.visit_pat(&arm.pat);
                m.body(&arm.body);
            }
        });
    }

    fn visit_pat_guard(&mut self, node: &'ast syn::PatGuard) {
        self.complexity += 1;
        visit::visit_pat_guard(self, node);
    }

    fn visit_local_init(&mut self, node: &'ast syn::LocalInit) {
        self.visit_expr(&node.expr);
        if let Some((_, otherwise)) = &node.diverge {
            self.complexity += 1;
            self.nested(|m| m.body(otherwise));
        }
    }

    fn visit_expr_while(&mut self, node: &'ast syn::ExprWhile) {
        self.complexity += 1;
        self.visit_expr(&node.cond);
        self.nested(|m| m.contents(&node.body));
    }

    fn visit_expr_for_loop(&mut self, node: &'ast syn::ExprForLoop) {
        self.complexity += 1;
        self.visit_expr(&node.expr);
        self.nested(|m| m.contents(&node.body));
    }

    fn visit_expr_loop(&mut self, node: &'ast syn::ExprLoop) {
        self.complexity += 1;
        self.nested(|m| m.contents(&node.body));
    }

    fn visit_expr_closure(&mut self, node: &'ast syn::ExprClosure) {
        self.nested(|m| m.body(&node.body));
    }

    fn visit_expr_block(&mut self, node: &'ast syn::ExprBlock) {
        self.nested(|m| m.contents(&node.block));
    }

    fn visit_expr_binary(&mut self, node: &'ast syn::ExprBinary) {
        if matches!(node.op, syn::BinOp::And(_) | syn::BinOp::Or(_)) {
            self.complexity += 1;
        }
        visit::visit_expr_binary(self, node);
    }

    fn visit_expr_try(&mut self, node: &'ast syn::ExprTry) {
        self.complexity += 1;
        visit::visit_expr_try(self, node);
    }
}

/// What the lexer learns about the lines of a file (lines numbered from 1).
#[derive(Default)]
struct Lexed {
    /// Every comment, one entry per line it covers.
    comments: Vec<Comment>,
    /// Lines holding code: anything but whitespace and comments.
    code: BTreeSet<usize>,
    /// Lines whose line break is inside a string literal: their trailing whitespace is
    /// part of the string's value.
    open: BTreeSet<usize>,
}

/// The part of a comment on one line.
struct Comment {
    /// Its line.
    line: usize,
    /// The column (in characters, from 0) where it starts on that line.
    column: usize,
    /// A `//` comment, rather than (part of) a `/* */` comment.
    double_slash: bool,
    /// Its text, markers included.
    text: String,
}

/// A small lexer, enough to tell comments, string literals and other code apart: it
/// knows strings with escapes, raw strings, char literals versus lifetimes, and nested
/// block comments. syn does not keep comments, hence this.
fn lex(source: &str) -> Lexed {
    let chars: Vec<char> = source.chars().collect();
    let mut lexer = Lexer {
        chars: &chars,
        at: 0,
        line: 1,
        line_start: 0,
        lexed: Lexed::default(),
    };
    lexer.run();
    lexer.lexed
}

/// The state of [`lex`].
struct Lexer<'a> {
    /// The source.
    chars: &'a [char],
    /// The current position.
    at: usize,
    /// The current line.
    line: usize,
    /// Where the current line starts.
    line_start: usize,
    /// What was found so far.
    lexed: Lexed,
}

impl Lexer<'_> {
    /// The character `ahead` positions on, if any.
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    /// Moves past a line break at the current position.
    fn newline(&mut self) {
        self.at += 1;
        self.line += 1;
        self.line_start = self.at;
    }

    /// Lexes the whole source.
    fn run(&mut self) {
        while let Some(c) = self.peek(0) {
            match c {
                '\n' => self.newline(),
                c if c.is_whitespace() => self.at += 1,
                '/' if self.peek(1) == Some('/') => self.line_comment(),
                '/' if self.peek(1) == Some('*') => self.block_comment(),
                '"' => {
                    self.lexed.code.insert(self.line);
                    self.at += 1;
                    self.string(None);
                }
                '\'' => {
                    self.lexed.code.insert(self.line);
                    self.quote();
                }
                c if c.is_alphabetic() || c == '_' => {
                    self.lexed.code.insert(self.line);
                    self.word();
                }
                _ => {
                    self.lexed.code.insert(self.line);
                    self.at += 1;
                }
            }
        }
    }

    /// `// ...` up to the end of the line.
    fn line_comment(&mut self) {
        let start = self.at;
        while self.peek(0).is_some_and(|c| c != '\n') {
            self.at += 1;
        }
        let text: String = self.chars[start..self.at].iter().collect();
        self.lexed.comments.push(Comment {
            line: self.line,
            column: start - self.line_start,
            double_slash: true,
            text: text.trim_end_matches('\r').to_owned(),
        });
    }

    /// `/* ... */`, nested, one comment entry per line.
    fn block_comment(&mut self) {
        let mut depth = 0_usize;
        let mut start = self.at;
        let push = |lexer: &mut Self, start: usize| {
            let text: String = lexer.chars[start..lexer.at].iter().collect();
            lexer.lexed.comments.push(Comment {
                line: lexer.line,
                column: start - lexer.line_start,
                double_slash: false,
                text: text.trim_end_matches('\r').to_owned(),
            });
        };
        while let Some(c) = self.peek(0) {
            match (c, self.peek(1)) {
                ('/', Some('*')) => {
                    depth += 1;
                    self.at += 2;
                }
                ('*', Some('/')) => {
                    depth -= 1;
                    self.at += 2;
                    if depth == 0 {
                        break;
                    }
                }
                ('\n', _) => {
                    push(self, start);
                    self.newline();
                    start = self.at;
                }
                _ => self.at += 1,
            }
        }
        push(self, start);
    }

    /// The rest of a string literal after its opening quote; `hashes` for raw strings.
    fn string(&mut self, hashes: Option<usize>) {
        while let Some(c) = self.peek(0) {
            match c {
                '\\' if hashes.is_none() => {
                    self.at += 1;
                    if self.peek(0) == Some('\n') {
                        self.lexed.open.insert(self.line);
                        self.newline();
                        self.lexed.code.insert(self.line);
                    } else {
                        self.at += 1;
                    }
                }
                '"' => {
                    self.at += 1;
                    let closing = hashes.unwrap_or(0);
                    if (0..closing).all(|i| self.peek(i) == Some('#')) {
                        self.at += closing;
                        return;
                    }
                }
                '\n' => {
                    self.lexed.open.insert(self.line);
                    self.newline();
                    self.lexed.code.insert(self.line);
                }
                _ => self.at += 1,
            }
        }
    }

    /// A char literal (`'x'`, `'\n'`) or a lifetime or label (`'a`).
    fn quote(&mut self) {
        if self.peek(1) == Some('\\') {
            self.at += 3;
            while self.peek(0).is_some_and(|c| c != '\'' && c != '\n') {
                self.at += 1;
            }
            self.at += 1;
        } else if self.peek(2) == Some('\'') {
            self.at += 3;
        } else {
            // A lifetime: its name is lexed as a word next.
            self.at += 1;
        }
    }

    /// An identifier or keyword, or the prefix of a raw string (`r"`, `r#"`, `br"`, `cr"`).
    fn word(&mut self) {
        let start = self.at;
        while self
            .peek(0)
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            self.at += 1;
        }
        let word: String = self.chars[start..self.at].iter().collect();
        if matches!(word.as_str(), "r" | "br" | "cr") {
            let mut hashes = 0;
            while self.peek(hashes) == Some('#') {
                hashes += 1;
            }
            if self.peek(hashes) == Some('"') {
                self.at += hashes + 1;
                self.string(Some(hashes));
            }
        }
    }
}
