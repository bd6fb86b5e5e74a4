//! The CRI log format the kubelet's runtime (containerd) writes:
//! `<RFC 3339 time> <stdout|stderr> <tag> <message>\n`, where the tag is `F`
//! for a full line and `P` for a part of a longer one (containerd cuts lines
//! at 16 KiB); the parts of one stream are joined up to the next `F`.
//! A tag may carry more flags after a colon (`F:x`); only the first counts.

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One parsed line (borrowing the file's bytes).
#[derive(Debug, PartialEq, Eq)]
pub struct CriLine<'a> {
    pub time: &'a str,
    pub stream: Stream,
    /// A part of a longer line (`P`), to be joined with what follows.
    pub partial: bool,
    pub message: &'a [u8],
}

/// Why a line is not CRI.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CriError {
    #[error("missing the {0} field")]
    Missing(&'static str),
    #[error("stream {0:?} is neither stdout nor stderr")]
    Stream(String),
    #[error("tag {0:?} is neither F nor P")]
    Tag(String),
    #[error("the time is not UTF-8")]
    Time,
}

/// Parses one line (without its newline).
pub fn parse(line: &[u8]) -> Result<CriLine<'_>, CriError> {
    let mut rest = line;
    let mut field = |name| {
        let end = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or(CriError::Missing(name))?;
        let f = &rest[..end];
        rest = &rest[end + 1..];
        Ok::<_, CriError>(f)
    };
    let time = std::str::from_utf8(field("time")?).map_err(|_| CriError::Time)?;
    let stream = match field("stream")? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        other => {
            return Err(CriError::Stream(
                String::from_utf8_lossy(other).into_owned(),
            ))
        }
    };
    // The tag may end the line when the message is empty (`... F` with no
    // space after it is not written by containerd, but be lenient).
    let (tag, message) = match rest.iter().position(|b| *b == b' ') {
        Some(end) => (&rest[..end], &rest[end + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let first = tag.split(|b| *b == b':').next().unwrap_or_default();
    let partial = match first {
        b"F" => false,
        b"P" => true,
        _ => return Err(CriError::Tag(String::from_utf8_lossy(tag).into_owned())),
    };
    Ok(CriLine {
        time,
        stream,
        partial,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_partial_and_empty_lines() {
        let l = parse(b"2026-12-05T07:15:04.123456789Z stdout F hello world").unwrap();
        assert_eq!(
            l,
            CriLine {
                time: "2026-12-05T07:15:04.123456789Z",
                stream: Stream::Stdout,
                partial: false,
                message: b"hello world"
            }
        );
        let l = parse(b"2026-12-05T07:15:04+00:00 stderr P part ").unwrap();
        assert!(l.partial);
        assert_eq!(l.message, b"part ");
        assert_eq!(l.stream, Stream::Stderr);
        assert_eq!(parse(b"t stdout F ").unwrap().message, b"");
        assert_eq!(parse(b"t stdout F").unwrap().message, b"");
        assert!(!parse(b"t stdout F:x m").unwrap().partial);
    }

    #[test]
    fn broken_lines_say_what_is_wrong() {
        assert_eq!(parse(b"nothing"), Err(CriError::Missing("time")));
        assert_eq!(parse(b"t stdin F x"), Err(CriError::Stream("stdin".into())));
        assert_eq!(parse(b"t stdout X x"), Err(CriError::Tag("X".into())));
        assert_eq!(parse(b"t stdout"), Err(CriError::Missing("stream")));
    }
}
