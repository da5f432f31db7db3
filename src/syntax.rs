//! Unit-file syntax: systemd's `config_parse()` rules, keeping line numbers and raw bytes.
//!
//! Modelled on `src/shared/conf-parser.c` (v243 and later): whole-line `#`/`;` comments that are
//! dropped before continuation handling, an odd run of trailing backslashes continues a line and
//! becomes one space, an empty line ends a continuation, a 1 MiB limit on physical and joined lines,
//! invalid UTF-8 and bad section headers are fatal for the file. Values are kept raw: quoting and
//! specifiers belong to each setting's own parser, not to the file syntax.

use std::fmt;
use std::ops::Range;

/// systemd's `LONG_LINE_MAX` (src/basic/fileio.h): longer lines make the whole file fail to load.
pub const LONG_LINE_MAX: usize = 1024 * 1024;

const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// One physical line of a file, with its terminator kept so a file can be rewritten byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// The line's bytes without its terminator.
    pub text: Vec<u8>,
    /// The terminator as found (`\n`, `\r\n`, `\r`, `\n\r`, `\0`, or empty at end of file).
    pub end: Vec<u8>,
}

/// One `Key=Value` assignment as systemd sees it after joining continuations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Section the assignment belongs to (without brackets).
    pub section: String,
    /// Key, whitespace-stripped, case preserved.
    pub key: String,
    /// Value, whitespace-stripped, continuations joined with a space; no unquoting.
    pub value: String,
    /// 1-based number of the first physical line of the assignment.
    pub line: usize,
    /// 0-based physical line indexes the assignment spans (comment lines inside included).
    pub span: Range<usize>,
}

/// A parsed unit file or drop-in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitFile {
    /// The file's bytes, for byte-exact rewriting (lines are split again when needed: a
    /// per-line copy costs about 80 bytes a line, 1.6 GB for a 20 MB file of newlines).
    pub data: Vec<u8>,
    /// Number of physical lines.
    pub line_count: usize,
    /// Assignments in file order (including those in sections a unit type ignores).
    pub assignments: Vec<Assignment>,
    /// Lines systemd warns about and skips (missing `=`, assignment outside a section, ...).
    pub ignored: Vec<(usize, String)>,
}

/// An error that makes systemd refuse the whole file (or the rest of a drop-in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based physical line number.
    pub line: usize,
    /// What is wrong, in systemd's terms.
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for SyntaxError {}

/// Split bytes into physical lines the way `read_line_full()` does: `\n`, `\r`, `\r\n`, `\n\r`
/// and `\0` all end a line.
pub fn split_lines(data: &[u8]) -> Vec<RawLine> {
    lines(data)
        .map(|(text, end)| RawLine {
            text: text.to_vec(),
            end: end.to_vec(),
        })
        .collect()
}

/// The physical lines of `data` as (text, terminator) slices, without copying.
pub fn lines(data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= data.len() {
            return None;
        }
        let rest = &data[start..];
        let Some(i) = rest
            .iter()
            .position(|&b| b == b'\n' || b == b'\r' || b == 0)
        else {
            start = data.len();
            return Some((rest, &rest[rest.len()..]));
        };
        let mut end = i + 1;
        if (rest[i] == b'\n' && rest.get(i + 1) == Some(&b'\r'))
            || (rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n'))
        {
            end += 1;
        }
        start += end;
        Some((&rest[..i], &rest[i..end]))
    })
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii() && is_ws(c as u8))
}

/// Which errors stop systemd reading a file, by version (`config_parse()` in
/// src/shared/conf-parser.c and `read_line()` in src/basic/fileio.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// An invalid-UTF-8 line is fatal (v239+, commit 78d17fa099). Before, only some value
    /// parsers check it, and they ignore the assignment, not the file.
    pub utf8_fatal: bool,
    /// Control characters in a section header are fatal (v251+, commit cec7f09dc8).
    pub header_control_fatal: bool,
    /// A line over 1 MiB is fatal (v235+, commit e6dde451a5); before, `fgets()` hands it over
    /// in pieces, each parsed as its own line.
    pub long_line_fatal: bool,
    /// A line without `=` is fatal (before v243, commit 2d4fffb00b); since, it is skipped.
    pub missing_equals_fatal: bool,
}

impl Rules {
    /// The rules of systemd `major` (the newest when unknown).
    pub fn for_version(major: Option<u32>) -> Rules {
        let v = major.unwrap_or(u32::MAX);
        Rules {
            utf8_fatal: v >= 239,
            header_control_fatal: v >= 251,
            long_line_fatal: v >= 235,
            missing_equals_fatal: v < 243,
        }
    }
}

impl Rules {
    /// Nothing is fatal: for rewriting a file systemd was already found to load.
    pub fn lenient() -> Rules {
        Rules {
            utf8_fatal: false,
            header_control_fatal: false,
            long_line_fatal: false,
            missing_equals_fatal: false,
        }
    }
}

impl Default for Rules {
    fn default() -> Self {
        Rules::for_version(None)
    }
}

/// Parse a whole file with the newest systemd's rules; see [`parse_with`].
pub fn parse(data: &[u8]) -> Result<UnitFile, (UnitFile, SyntaxError)> {
    parse_with(data, Rules::default())
}

/// Parse a whole file. On a fatal error the assignments read before it are kept in the
/// error's companion value, because systemd keeps them for drop-ins.
pub fn parse_with(data: &[u8], rules: Rules) -> Result<UnitFile, (UnitFile, SyntaxError)> {
    let mut file = UnitFile {
        data: data.to_vec(),
        line_count: 0,
        assignments: Vec::new(),
        ignored: Vec::new(),
    };
    let mut section: Option<String> = None;
    // Continuation being collected: joined bytes and the index of its first physical line.
    let mut cont: Option<(Vec<u8>, usize)> = None;
    let mut bom_seen = false;
    let mut result = Ok(());

    let mut count = 0;
    for (idx, (text, _)) in lines(data).enumerate() {
        count = idx + 1;
        let lineno = idx + 1;
        if text.len() > LONG_LINE_MAX && rules.long_line_fatal {
            result = Err(SyntaxError {
                line: lineno,
                message: format!(
                    "line too long ({} bytes, limit {LONG_LINE_MAX})",
                    text.len()
                ),
            });
            break;
        }
        let mut l: &[u8] = text;
        let first = l.iter().position(|&b| !is_ws(b));
        if let Some(p) = first {
            if l[p] == b'#' || l[p] == b';' {
                continue; // comments go before continuation handling (v243+)
            }
        }
        if rules.utf8_fatal && std::str::from_utf8(l).is_err() {
            // v239+: an invalid-UTF-8 line is fatal for the file (comment lines are never checked).
            result = Err(SyntaxError {
                line: lineno,
                message: "invalid UTF-8".into(),
            });
            break;
        }
        if !bom_seen {
            if let Some(rest) = l.strip_prefix(UTF8_BOM) {
                l = rest;
            }
            bom_seen = true;
        }
        let (joined, start) = match cont.take() {
            Some((mut c, start)) => {
                if c.len() + l.len() > LONG_LINE_MAX && rules.long_line_fatal {
                    result = Err(SyntaxError {
                        line: lineno,
                        message: format!(
                            "continuation line too long (limit {LONG_LINE_MAX} bytes)"
                        ),
                    });
                    break;
                }
                c.extend_from_slice(l);
                (c, start)
            }
            None => (l.to_vec(), idx),
        };
        // systemd rescans the whole joined line; the text before `l` always ends unescaped (its
        // continuation backslash became a space), so scanning `l` alone gives the same answer
        // in linear time: 300,000 continuation lines take milliseconds, not minutes.
        let mut escaped = false;
        for &b in l {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            }
        }
        if escaped {
            let mut joined = joined;
            if let Some(last) = joined.last_mut() {
                *last = b' ';
            }
            cont = Some((joined, start));
            continue;
        }
        if let Err(e) = parse_line(&mut file, &mut section, &joined, start, idx + 1, rules) {
            result = Err(e);
            break;
        }
    }
    if result.is_ok() {
        if let Some((joined, start)) = cont.take() {
            // v239+: a continuation still open at end of file is parsed as it stands.
            if let Err(e) = parse_line(&mut file, &mut section, &joined, start, count, rules) {
                result = Err(e);
            }
        }
    }
    // An error stops the reading, as in systemd; the count still covers the whole file.
    file.line_count = if result.is_ok() {
        count
    } else {
        lines(data).count()
    };
    match result {
        Ok(()) => Ok(file),
        Err(e) => Err((file, e)),
    }
}

fn parse_line(
    file: &mut UnitFile,
    section: &mut Option<String>,
    bytes: &[u8],
    start: usize,
    end: usize,
    rules: Rules,
) -> Result<(), SyntaxError> {
    let lineno = start + 1;
    // Before v239 bytes that are not UTF-8 reach the value parsers as they are; dropfix reads
    // them as U+FFFD (only the value can be affected, never the file's structure).
    let owned;
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(_) if !rules.utf8_fatal => {
            owned = String::from_utf8_lossy(bytes).into_owned();
            owned.as_str()
        }
        Err(_) => {
            return Err(SyntaxError {
                line: lineno,
                message: "invalid UTF-8".into(),
            })
        }
    };
    let l = strip(text);
    if l.is_empty() {
        return Ok(());
    }
    if let Some(rest) = l.strip_prefix('[') {
        let Some(name) = rest.strip_suffix(']') else {
            return Err(SyntaxError {
                line: lineno,
                message: format!("invalid section header '{l}'"),
            });
        };
        if rules.header_control_fatal && name.chars().any(|c| c.is_control()) {
            return Err(SyntaxError {
                line: lineno,
                message: "bad characters in section header".into(),
            });
        }
        *section = Some(name.to_string());
        return Ok(());
    }
    let Some(sec) = section.as_ref() else {
        file.ignored
            .push((lineno, "assignment outside of section".into()));
        return Ok(());
    };
    let Some(eq) = l.find('=') else {
        if rules.missing_equals_fatal {
            return Err(SyntaxError {
                line: lineno,
                message: "missing '='".into(),
            });
        }
        file.ignored.push((lineno, "missing '='".into()));
        return Ok(());
    };
    if eq == 0 {
        file.ignored
            .push((lineno, "missing key name before '='".into()));
        return Ok(());
    }
    file.assignments.push(Assignment {
        section: sec.clone(),
        key: strip(&l[..eq]).to_string(),
        value: strip(&l[eq + 1..]).to_string(),
        line: lineno,
        span: start..end,
    });
    Ok(())
}

/// Rewrite a file with every physical line of the chosen assignments turned into a comment,
/// each group preceded by `reason` (already a full comment line, without terminator).
/// All other bytes, including line terminators, are kept exactly.
pub fn comment_out(file: &UnitFile, spans: &[Range<usize>], reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(file.data.len() + 2 * spans.len() + reason.len());
    let default_end: &[u8] = lines(&file.data)
        .map(|(_, end)| end)
        .find(|end| !end.is_empty())
        .unwrap_or(b"\n");
    // One pass over lines and (sorted) spans: a file with a million MountFlags lines stays linear.
    let mut spans: Vec<&Range<usize>> = spans.iter().filter(|s| !s.is_empty()).collect();
    spans.sort_by_key(|s| s.start);
    let mut next = spans.into_iter().peekable();
    for (i, (text, end)) in lines(&file.data).enumerate() {
        while next.peek().is_some_and(|s| s.end <= i) {
            next.next();
        }
        match next.peek() {
            Some(span) if span.contains(&i) => {
                if span.start == i {
                    out.extend_from_slice(reason.as_bytes());
                    out.extend_from_slice(default_end);
                }
                out.push(b'#');
                out.extend_from_slice(text);
                // A final line without terminator must not glue onto nothing: keep it as is.
                out.extend_from_slice(end);
            }
            _ => {
                out.extend_from_slice(text);
                out.extend_from_slice(end);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> UnitFile {
        match parse(s.as_bytes()) {
            Ok(f) => f,
            Err((_, e)) => panic!("unexpected error: {e}"),
        }
    }

    fn value(f: &UnitFile, key: &str) -> Option<String> {
        f.assignments
            .iter()
            .rev()
            .find(|a| a.key == key)
            .map(|a| a.value.clone())
    }

    #[test]
    fn trailing_backslash_joins_lines_with_one_space_keeping_leading_whitespace() {
        let f = ok("[Service]\nDescription=part1 \\\n     part2\n");
        assert_eq!(
            value(&f, "Description").as_deref(),
            Some("part1       part2")
        );
        assert_eq!(f.assignments[0].span, 1..3);
        assert_eq!(f.assignments[0].line, 2);
    }

    #[test]
    fn comment_line_inside_continuation_is_dropped_and_continuation_goes_on() {
        let f = ok("[Section]\nsetting1=1\\\n#hogehoge\\\n2\\\n3\n");
        assert_eq!(value(&f, "setting1").as_deref(), Some("1 2 3"));
    }

    #[test]
    fn comment_ending_in_backslash_does_not_continue() {
        let f = ok("[Section]\n#hogehoge\\\nsetting1=1\\\n2\\\n3\n");
        assert_eq!(value(&f, "setting1").as_deref(), Some("1 2 3"));
    }

    #[test]
    fn indented_comment_is_a_comment() {
        let f = ok("[Section]\n   setting1=1\\\n   #hogehoge\\\n2\\\n3\n");
        assert_eq!(value(&f, "setting1").as_deref(), Some("1 2 3"));
    }

    #[test]
    fn whitespace_only_line_ends_a_continuation() {
        let f = ok("[Section]\nsetting1=1\nsetting1=2\\\n   \nsetting1=1\n");
        let vals: Vec<_> = f.assignments.iter().map(|a| a.value.as_str()).collect();
        assert_eq!(vals, ["1", "2", "1"]);
    }

    #[test]
    fn continuation_open_at_end_of_file_is_parsed() {
        let f = ok("[Section]\nsetting1=1\\\n2\\\n3\\\n");
        assert_eq!(value(&f, "setting1").as_deref(), Some("1 2 3"));
    }

    #[test]
    fn only_an_odd_run_of_backslashes_continues() {
        let f = ok("[Section]\nsetting1=1\\\\\\\n\\\\2\n");
        assert_eq!(value(&f, "setting1").as_deref(), Some("1\\\\ \\\\2"));
        let f = ok("[Service]\nEnvironment=G=x\\\\\nType=simple\n");
        assert_eq!(value(&f, "Environment").as_deref(), Some("G=x\\\\"));
        assert_eq!(value(&f, "Type").as_deref(), Some("simple"));
    }

    #[test]
    fn backslash_followed_by_space_does_not_continue() {
        let f = ok("[Service]\nDocumentation=man:x(1) \\ \nType=simple\n");
        assert_eq!(value(&f, "Documentation").as_deref(), Some("man:x(1) \\"));
    }

    #[test]
    fn inline_hash_is_part_of_the_value() {
        let f = ok("[Service]\nEnvironment=D=1 # not-a-comment\n");
        assert_eq!(
            value(&f, "Environment").as_deref(),
            Some("D=1 # not-a-comment")
        );
    }

    #[test]
    fn key_and_value_are_stripped_and_split_at_first_equals() {
        let f = ok("[Service]\n  Environment  =  C=3   \n");
        assert_eq!(f.assignments[0].key, "Environment");
        assert_eq!(f.assignments[0].value, "C=3");
    }

    #[test]
    fn repeated_keys_are_all_kept_in_order() {
        let f = ok("[Section]\n[Section]\nsetting1=1\nsetting1=    2 \t\nsetting1=    1\n");
        let vals: Vec<_> = f.assignments.iter().map(|a| a.value.as_str()).collect();
        assert_eq!(vals, ["1", "2", "1"]);
    }

    #[test]
    fn empty_assignment_is_kept_as_empty_value() {
        let f = ok("[Service]\nMountFlags=\n");
        assert_eq!(value(&f, "MountFlags").as_deref(), Some(""));
    }

    #[test]
    fn crlf_line_endings_work_and_are_preserved() {
        let data = b"[Service]\r\nDescription=crlf test\r\nType=simple\\\r\n oneshot\r\n";
        let f = ok(std::str::from_utf8(data).unwrap());
        assert_eq!(value(&f, "Description").as_deref(), Some("crlf test"));
        assert_eq!(value(&f, "Type").as_deref(), Some("simple  oneshot"));
        assert_eq!(comment_out(&f, &[], "#"), data.to_vec());
    }

    #[test]
    fn section_header_without_closing_bracket_is_fatal() {
        let (partial, e) =
            parse(b"[Service]\nType=simple\n[Broken\nMountFlags=slave\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(
            partial.assignments.len(),
            1,
            "lines before the error still count"
        );
    }

    #[test]
    fn section_name_keeps_inner_whitespace() {
        let f = ok("[ Service ]\nMountFlags=slave\n");
        assert_eq!(f.assignments[0].section, " Service ");
    }

    #[test]
    fn invalid_utf8_is_fatal() {
        let (_, e) = parse(b"[Service]\nEnvironment=U=\xff\xfe\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("UTF-8"));
    }

    #[test]
    fn physical_line_over_one_mebibyte_is_fatal() {
        let mut data = b"[Section]\nsetting1=".to_vec();
        data.extend(std::iter::repeat_n(b'x', LONG_LINE_MAX));
        data.push(b'\n');
        let (_, e) = parse(&data).unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn joined_line_over_one_mebibyte_is_fatal() {
        let mut data = b"[Section]\nsetting1=".to_vec();
        for _ in 0..1000 {
            data.extend(std::iter::repeat_n(b'x', 1050));
            data.extend_from_slice(b"\\\n");
        }
        data.extend_from_slice(b"xxx");
        assert!(parse(&data).is_err());
    }

    #[test]
    fn line_just_under_the_limit_loads() {
        let mut data = b"[Section]\nsetting1=".to_vec();
        data.extend(std::iter::repeat_n(b'x', 1_048_000));
        assert!(parse(&data).is_ok());
    }

    #[test]
    fn missing_equals_and_outside_section_are_ignored_not_fatal() {
        let f = ok("Type=simple\n[Service]\n.include /x\nMountFlags=slave\n=v\n");
        assert_eq!(f.assignments.len(), 1);
        assert_eq!(f.ignored.len(), 3);
    }

    #[test]
    fn byte_order_mark_is_skipped_at_start() {
        let f = ok("\u{feff}[Service]\nMountFlags=slave\n");
        assert_eq!(f.assignments[0].section, "Service");
    }

    #[test]
    fn comment_out_keeps_every_other_byte() {
        let src = "[Service]\nType=notify\nMountFlags=sla\\\n ve\nLimitNOFILE=1\n";
        let f = ok(src);
        let spans: Vec<_> = f
            .assignments
            .iter()
            .filter(|a| a.key == "MountFlags")
            .map(|a| a.span.clone())
            .collect();
        let out = comment_out(&f, &spans, "# why");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[Service]\nType=notify\n# why\n#MountFlags=sla\\\n# ve\nLimitNOFILE=1\n"
        );
    }

    #[test]
    fn no_final_newline_is_preserved() {
        let f = ok("[Service]\nMountFlags=slave");
        assert_eq!(value(&f, "MountFlags").as_deref(), Some("slave"));
        assert_eq!(
            comment_out(&f, &[], "#"),
            b"[Service]\nMountFlags=slave".to_vec()
        );
    }
}
