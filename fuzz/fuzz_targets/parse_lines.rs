//! Fuzz the Zeek reader: any bytes, split into lines, through one parser (headers, TSV rows, JSON) must never
//! panic, and a header block saved and rebuilt must parse the same. Run: `cargo fuzz run parse_lines`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use longconn::zeek::{LogParser, ParseOptions, TsvHeader};

fuzz_target!(|data: &[u8]| {
    let mut parser = LogParser::new(ParseOptions::default());
    for line in data.split(|b| *b == b'\n') {
        let a = parser.parse_line(line);
        let mut rebuilt = LogParser::new(ParseOptions::default());
        rebuilt.set_header(TsvHeader::from_lines(parser.header().lines().to_vec()));
        if !line.starts_with(b"#") {
            assert_eq!(format!("{a:?}"), format!("{:?}", rebuilt.parse_line(line)));
        }
    }
});
