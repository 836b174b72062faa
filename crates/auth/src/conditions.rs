//! Role-assignment conditions (Azure ABAC, condition version 2.0), the part ACR's
//! repository permissions use:
//!
//! ```text
//! ((!(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/content/read'}))
//!   OR (@Request[Microsoft.ContainerRegistry/registries/repositories:name]
//!       StringStartsWithIgnoreCase 'samples/'))
//! ```
//!
//! Supported: `AND`, `OR`, `!`/`NOT`, parentheses, `ActionMatches{…}` (one or more action
//! patterns), and a repository-name attribute (`@Request[…]` or `@Resource[…]`) compared
//! with `StringEquals`, `StringStartsWith`, `StringLike` (each also `…IgnoreCase` and
//! negated `StringNot…`), against a string or a `{…}` list (any of). Anything else is
//! refused when the assignment is created, never ignored.
//!
//! A condition is bounded before it is read: at most [`MAX_LEN`] bytes and [`MAX_DEPTH`]
//! levels of parentheses and negations (a condition nested 500 deep once overflowed the
//! parser's stack and took the server down); `AND`/`OR` chains are flat lists, so neither
//! evaluating nor dropping one recurses per term.

use crate::roles::matches;

/// The longest condition accepted (Azure's limit on a role assignment's condition).
pub const MAX_LEN: usize = 8 * 1024;
/// The deepest nesting of parentheses and negations accepted.
pub const MAX_DEPTH: usize = 32;

/// The repository-name attribute, the only one conditions may read.
const REPOSITORY_NAME: &str = "Microsoft.ContainerRegistry/registries/repositories:name";

/// A parsed condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Every one holds.
    And(Vec<Condition>),
    /// At least one holds.
    Or(Vec<Condition>),
    Not(Box<Condition>),
    ActionMatches(Vec<String>),
    Repository {
        op: StringOp,
        negate: bool,
        ignore_case: bool,
        values: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StringOp {
    Equals,
    StartsWith,
    Like,
}

/// What a condition is evaluated against.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub action: &'a str,
    /// The repository the request is about, if any.
    pub repository: Option<&'a str>,
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, String> {
        if text.len() > MAX_LEN {
            return Err(format!("a condition may be at most {MAX_LEN} bytes long"));
        }
        let tokens = tokenize(text)?;
        let mut p = Parser { tokens, at: 0, depth: 0 };
        let c = p.expr()?;
        if p.at != p.tokens.len() {
            return Err(format!("unexpected '{}'", p.tokens[p.at].text()));
        }
        Ok(c)
    }

    pub fn holds(&self, cx: Context<'_>) -> bool {
        match self {
            Condition::And(all) => all.iter().all(|c| c.holds(cx)),
            Condition::Or(any) => any.iter().any(|c| c.holds(cx)),
            Condition::Not(a) => !a.holds(cx),
            Condition::ActionMatches(patterns) => patterns.iter().any(|p| matches(p, cx.action)),
            Condition::Repository { op, negate, ignore_case, values } => {
                // A request about no repository (the catalog) has no name to compare: the
                // comparison is false, as Azure evaluates a missing attribute.
                let Some(name) = cx.repository else { return false };
                let hit = values.iter().any(|v| compare(*op, *ignore_case, name, v));
                hit != *negate
            }
        }
    }
}

fn compare(op: StringOp, ignore_case: bool, name: &str, value: &str) -> bool {
    let (name, value) = if ignore_case {
        (name.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (name.to_owned(), value.to_owned())
    };
    match op {
        StringOp::Equals => name == value,
        StringOp::StartsWith => name.starts_with(&value),
        StringOp::Like => crate::glob::matches(&value, &name),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    BraceOpen,
    BraceClose,
    Comma,
    Not,
    Word(String),
    Str(String),
    Attribute(String),
}

impl Token {
    fn text(&self) -> String {
        match self {
            Token::Open => "(".into(),
            Token::Close => ")".into(),
            Token::BraceOpen => "{".into(),
            Token::BraceClose => "}".into(),
            Token::Comma => ",".into(),
            Token::Not => "!".into(),
            Token::Word(w) => w.clone(),
            Token::Str(s) => format!("'{s}'"),
            Token::Attribute(a) => a.clone(),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => out.push(Token::Open),
            ')' => out.push(Token::Close),
            '{' => out.push(Token::BraceOpen),
            '}' => out.push(Token::BraceClose),
            ',' => out.push(Token::Comma),
            '!' => out.push(Token::Not),
            '\'' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, c)) => s.push(c),
                        None => return Err("unterminated string".into()),
                    }
                }
                out.push(Token::Str(s));
            }
            '@' => {
                let mut s = String::from("@");
                while let Some(&(_, c)) = chars.peek() {
                    s.push(c);
                    chars.next();
                    if c == ']' {
                        break;
                    }
                }
                out.push(Token::Attribute(s));
            }
            c if c.is_ascii_alphabetic() => {
                let mut w = String::from(c);
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == ':' {
                        w.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Word(w));
            }
            _ => return Err(format!("unexpected character '{c}' at {i}")),
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Parentheses and negations open around the current token.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn expect(&mut self, t: Token) -> Result<(), String> {
        match self.next() {
            Some(x) if x == t => Ok(()),
            Some(x) => Err(format!("expected '{}', found '{}'", t.text(), x.text())),
            None => Err(format!("expected '{}' at the end", t.text())),
        }
    }

    fn word_is(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn expr(&mut self) -> Result<Condition, String> {
        let mut any = vec![self.term()?];
        while self.word_is("OR") {
            self.at += 1;
            any.push(self.term()?);
        }
        Ok(if any.len() == 1 { any.remove(0) } else { Condition::Or(any) })
    }

    fn term(&mut self) -> Result<Condition, String> {
        let mut all = vec![self.factor()?];
        while self.word_is("AND") {
            self.at += 1;
            all.push(self.factor()?);
        }
        Ok(if all.len() == 1 { all.remove(0) } else { Condition::And(all) })
    }

    /// One level deeper (a parenthesis, a negation), refused past [`MAX_DEPTH`].
    fn nested<T>(
        &mut self,
        inner: impl FnOnce(&mut Self) -> Result<T, String>,
    ) -> Result<T, String> {
        if self.depth >= MAX_DEPTH {
            return Err(format!("a condition may nest at most {MAX_DEPTH} levels deep"));
        }
        self.depth += 1;
        let out = inner(self);
        self.depth -= 1;
        out
    }

    fn factor(&mut self) -> Result<Condition, String> {
        match self.next() {
            Some(Token::Not) => self.nested(|p| Ok(Condition::Not(Box::new(p.factor()?)))),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("NOT") => {
                self.nested(|p| Ok(Condition::Not(Box::new(p.factor()?))))
            }
            Some(Token::Open) => self.nested(|p| {
                let c = p.expr()?;
                p.expect(Token::Close)?;
                Ok(c)
            }),
            Some(Token::Word(w)) if w == "ActionMatches" => {
                Ok(Condition::ActionMatches(self.strings()?))
            }
            Some(Token::Attribute(a)) => {
                let inner = a
                    .strip_prefix("@Request[")
                    .or_else(|| a.strip_prefix("@Resource["))
                    .and_then(|r| r.strip_suffix(']'))
                    .ok_or_else(|| format!("unsupported attribute {a}"))?;
                if !inner.eq_ignore_ascii_case(REPOSITORY_NAME) {
                    return Err(format!("unsupported attribute {inner}"));
                }
                let Some(Token::Word(op)) = self.next() else {
                    return Err("expected an operator after the attribute".into());
                };
                let op = op.strip_prefix("ForAnyOfAnyValues:").unwrap_or(&op);
                let (negate, rest) = match op.strip_prefix("StringNot") {
                    Some(r) => (true, r),
                    None => (false, op.strip_prefix("String").unwrap_or("")),
                };
                let (ignore_case, base) = match rest.strip_suffix("IgnoreCase") {
                    Some(b) => (true, b),
                    None => (false, rest),
                };
                let op = match base {
                    "Equals" => StringOp::Equals,
                    "StartsWith" => StringOp::StartsWith,
                    "Like" => StringOp::Like,
                    _ => return Err(format!("unsupported operator {op}")),
                };
                let values = match self.peek() {
                    Some(Token::BraceOpen) => self.strings()?,
                    _ => match self.next() {
                        Some(Token::Str(s)) => vec![s],
                        _ => return Err("expected a string".into()),
                    },
                };
                Ok(Condition::Repository { op, negate, ignore_case, values })
            }
            Some(t) => Err(format!("unexpected '{}'", t.text())),
            None => Err("the condition ends too early".into()),
        }
    }

    /// `{'a', 'b'}`
    fn strings(&mut self) -> Result<Vec<String>, String> {
        self.expect(Token::BraceOpen)?;
        let mut out = Vec::new();
        loop {
            match self.next() {
                Some(Token::Str(s)) => out.push(s),
                _ => return Err("expected a string in '{…}'".into()),
            }
            match self.next() {
                Some(Token::Comma) => {}
                Some(Token::BraceClose) => return Ok(out),
                _ => return Err("expected ',' or '}'".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions;

    const READ_ONLY_SAMPLES: &str = "((!(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/content/read'}) AND !(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/metadata/read'})) OR (@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringStartsWithIgnoreCase 'samples/'))";

    #[test]
    fn acr_repository_conditions() {
        let c = Condition::parse(READ_ONLY_SAMPLES).unwrap();
        let cx = |action, repository| Context { action, repository };
        assert!(c.holds(cx(actions::CONTENT_READ, Some("Samples/app"))));
        assert!(!c.holds(cx(actions::CONTENT_READ, Some("prod/app"))));
        // Actions the condition doesn't name are not restricted by it.
        assert!(c.holds(cx(actions::CONTENT_WRITE, Some("prod/app"))));
        let eq = Condition::parse(
            "@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringEquals {'a', 'b/c'}",
        )
        .unwrap();
        assert!(eq.holds(cx(actions::CONTENT_READ, Some("b/c"))));
        assert!(!eq.holds(cx(actions::CONTENT_READ, Some("B/c"))));
        assert!(!eq.holds(cx(actions::CATALOG_DATA_READ, None)));
        let like = Condition::parse(
            "@Resource[Microsoft.ContainerRegistry/registries/repositories:name] StringNotLikeIgnoreCase 'tmp/*'",
        )
        .unwrap();
        assert!(like.holds(cx(actions::CONTENT_READ, Some("app"))));
        assert!(!like.holds(cx(actions::CONTENT_READ, Some("TMP/x"))));
    }

    #[test]
    fn unsupported_conditions_are_refused() {
        for bad in [
            "",
            "(",
            "@Request[Microsoft.Storage/blob:path] StringEquals 'x'",
            "@Request[Microsoft.ContainerRegistry/registries/repositories:name] NumericEquals 'x'",
            "ActionMatches{'a'} XOR ActionMatches{'b'}",
            "ActionMatches{'a'",
        ] {
            assert!(Condition::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deep_or_long_conditions_are_refused_not_recursed() {
        let leaf = "ActionMatches{'a'}";
        let nested = |n: usize| format!("{}{leaf}{}", "(".repeat(n), ")".repeat(n));
        assert!(Condition::parse(&nested(MAX_DEPTH)).is_ok());
        // 10 000 deep (20 KB) and 1 000 deep (within the length): refused, no stack overflow.
        assert!(Condition::parse(&nested(10_000)).is_err());
        let deep = nested(1_000);
        assert!(deep.len() <= MAX_LEN);
        assert!(Condition::parse(&deep).unwrap_err().contains("nest"));
        assert!(Condition::parse(&"!".repeat(1_000).to_string()).is_err());
        // A long flat chain is one list: evaluated and dropped without recursion.
        let chain = vec![leaf; 300].join(" AND ");
        let c = Condition::parse(&chain).unwrap();
        assert!(matches!(&c, Condition::And(all) if all.len() == 300));
        assert!(!c.holds(Context { action: "b", repository: None }));
    }
}
