//! The two READMEs stay in step (issue 15, item 1): English is the source of
//! truth, and every command block of it appears, in order, in the Chinese
//! one, and the Chinese one has no command block of its own.

fn command_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let Some(lang) = trimmed.strip_prefix("```") else {
            continue;
        };
        let indent = &line[..line.len() - trimmed.len()];
        let mut body = Vec::new();
        for l in lines.by_ref() {
            if l.trim_start() == "```" && l.starts_with(indent) {
                break;
            }
            body.push(l);
        }
        // Shell commands (comments are prose and get translated) and the
        // usage synopses.
        let is_usage = lang.is_empty() && body.first().is_some_and(|l| l.starts_with("dmirror "));
        if lang == "sh" || is_usage {
            let cmd: Vec<String> = body
                .iter()
                .map(|l| match (lang, l.find(" #")) {
                    ("sh", Some(i)) => l[..i].trim_end().to_owned(),
                    _ => l.trim_end().to_owned(),
                })
                .collect();
            out.push(cmd.join("\n"));
        }
    }
    out
}

#[test]
fn the_readmes_command_blocks_match() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let en = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let zh = std::fs::read_to_string(root.join("README.zh-CN.md")).expect("README.zh-CN.md");
    let (en_blocks, zh_blocks) = (command_blocks(&en), command_blocks(&zh));
    assert!(
        en_blocks.len() >= 8,
        "too few command blocks found: {en_blocks:?}"
    );
    assert_eq!(
        en_blocks, zh_blocks,
        "README.zh-CN.md's command blocks differ from README.md's; update the translation"
    );
    assert!(en.contains("README.zh-CN.md") && zh.contains("README.md"));
}
