//! Generates the compact GBK decoding data of `src/gbk.rs` from encoding_rs (at build time only,
//! so the component does not carry encoding_rs's tables for every encoding).
//!
//! Layout: the two-byte codes with lead and trail in 0xA1..=0xFE (the GB2312-shaped block) are a
//! plain table. Every other two-byte code is predicted from the one before it (the next CJK
//! ideograph not already in the block, or the previous code point plus one); the codes that break
//! the prediction are listed as exceptions.

use std::fmt::Write as _;

fn decode(lead: u8, trail: u8) -> u16 {
    let bytes = [lead, trail];
    match encoding_rs::GBK.decode_without_bom_handling_and_without_replacement(&bytes) {
        Some(s) => {
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if (c as u32) <= 0xFFFF => c as u32 as u16,
                _ => 0,
            }
        }
        None => 0,
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let mut block = Vec::with_capacity(94 * 94);
    for lead in 0xA1..=0xFEu8 {
        for trail in 0xA1..=0xFEu8 {
            block.push(decode(lead, trail));
        }
    }
    let mut in_block = vec![false; 0x10000];
    for &v in &block {
        in_block[v as usize] = true;
    }
    let next_ideograph = |after: u16| -> u16 {
        let mut c = after as u32 + 1;
        while c <= 0x9FFF && in_block[c as usize] {
            c += 1;
        }
        c as u16
    };
    // Every two-byte code in index order: lead 0x81..=0xFE, trail 0x40..=0xFE without 0x7F.
    let mut exceptions = Vec::new();
    let mut prev: u16 = 0;
    let mut index: u32 = 0;
    for lead in 0x81..=0xFEu8 {
        for trail in (0x40..=0xFEu8).filter(|&t| t != 0x7F) {
            let value = decode(lead, trail);
            if lead >= 0xA1 && trail >= 0xA1 {
                prev = value;
            } else {
                let predicted = if (0x4E00..=0x9FFF).contains(&prev) {
                    next_ideograph(prev)
                } else {
                    prev.wrapping_add(1)
                };
                if value != predicted {
                    exceptions.push((index as u16, value));
                }
                prev = value;
            }
            index += 1;
        }
    }
    let mut out = String::new();
    writeln!(out, "/// Lead and trail 0xA1..=0xFE, row by row.").unwrap();
    writeln!(out, "static BLOCK: [u16; {}] = {:?};", block.len(), block).unwrap();
    writeln!(
        out,
        "/// (index, code point) where the prediction does not hold."
    )
    .unwrap();
    writeln!(
        out,
        "static EXCEPTIONS: [(u16, u16); {}] = {:?};",
        exceptions.len(),
        exceptions
    )
    .unwrap();
    let path = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("gbk_data.rs");
    std::fs::write(path, out).unwrap();
}
