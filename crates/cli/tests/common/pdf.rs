//! PDFs written at test time, for the slide deck tests (#15).

/// A PDF of `pages` pages, 960x540 points (16:9): page `n` shows `n` black bars on white, so
/// each page's image differs. Written by hand: objects, a cross-reference table with each
/// object's byte offset, a trailer.
pub(crate) fn make_pdf(pages: usize) -> Vec<u8> {
    let mut objects: Vec<String> = Vec::new();
    // 1: catalog, 2: page tree, then per page a page object and its content stream.
    let kids: Vec<String> = (0..pages).map(|i| format!("{} 0 R", 3 + 2 * i)).collect();
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".into());
    objects.push(format!(
        "<< /Type /Pages /Kids [{}] /Count {pages} >>",
        kids.join(" ")
    ));
    for i in 0..pages {
        let n = i + 1;
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 960 540] /Contents {} 0 R >>",
            4 + 2 * i
        ));
        let mut draw = String::from("1 1 1 rg 0 0 960 540 re f 0 0 0 rg\n");
        for b in 0..n {
            draw.push_str(&format!("{} 100 40 340 re f\n", 80 + b * 70));
        }
        objects.push(format!(
            "<< /Length {} >>\nstream\n{draw}endstream",
            draw.len()
        ));
    }
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}
