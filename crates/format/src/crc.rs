//! The Ogg page checksum: CRC-32 with polynomial 0x04c11db7, no reflection, initial value 0 and
//! no final xor (the Ogg framing spec). Not the zlib/Ethernet CRC, so a generic crate's presets
//! do not fit; a 256-entry table built at compile time is all it takes.

const TABLE: [u32; 256] = build_table();

const fn build_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ 0x04c1_1db7
            } else {
                r << 1
            };
            bit += 1;
        }
        table[i] = r;
        i += 1;
    }
    table
}

/// Continue a CRC over `data`.
pub fn update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = (crc << 8) ^ TABLE[((crc >> 24) as u8 ^ b) as usize];
    }
    crc
}

/// CRC of an Ogg page whose checksum field (bytes 22..26) is taken as zero.
pub fn ogg_page_crc(page: &[u8]) -> u32 {
    if page.len() < 27 {
        return update(0, page);
    }
    let crc = update(0, &page[..22]);
    let crc = update(crc, &[0, 0, 0, 0]);
    update(crc, &page[26..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // CRC-32/BZIP2 without the init/xorout: "123456789" under poly 0x04c11db7, init 0,
        // no reflection, no xorout is 0x89a1897f (CRC-32/MPEG-2 family with init 0).
        assert_eq!(update(0, b"123456789"), 0x89a1_897f);
    }
}
