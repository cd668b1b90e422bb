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
    assemble(&objects, "")
}

/// A one-page PDF encrypted with the standard handler, whose empty user password is not the
/// password (the keys are made up): a reader asks for a password.
pub(crate) fn make_encrypted_pdf() -> Vec<u8> {
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".into(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 960 540] >>".into(),
        format!(
            "<< /Filter /Standard /V 1 /R 2 /O <{}> /U <{}> /P -4 >>",
            "11".repeat(32),
            "22".repeat(32)
        ),
    ];
    let id = "ab".repeat(16);
    assemble(&objects, &format!("/Encrypt 4 0 R /ID [<{id}><{id}>]"))
}

/// Objects 1.. (object 1 the catalog) with a cross-reference table giving each one's byte
/// offset, and a trailer (`trailer_extra` added to its dictionary).
fn assemble(objects: &[String], trailer_extra: &str) -> Vec<u8> {
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
            "trailer\n<< /Size {} /Root 1 0 R {trailer_extra} >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}
