//! Request-body and query helpers every resource module shares: bounded body reads, JSON bodies with the
//! offending path in errors, query strings read strictly, and multipart uploads staged on disk.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::{Path, PathBuf};

use crate::error::ApiError;

/// The body, at most `limit` bytes (413 over it; 400 when the connection broke mid-body).
pub(crate) async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > limit
    {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // Only a body over the limit is a 413; a connection that broke mid-body is the client's 400.
        let over = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
            .any(|e| e.is::<http_body_util::LengthLimitError>());
        if over {
            too_large()
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                format!("the request body could not be read: {e}"),
            )
        }
    })
}

/// The JSON type of a value, as error messages name it.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A JSON number that is an integer, also when written with a fraction (`38.0`), as JSON Schema's `integer`
/// allows; magnitudes up to 2^53 (where doubles still hold every integer).
pub(crate) fn integer_of(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|x| x.fract() == 0.0 && x.abs() <= 9_007_199_254_740_992.0)
            .map(|x| x as i64)
    })
}

/// A JSON body as `T`, read the way the OpenAPI document describes it: a top-level `null` field is the same
/// as an absent one, and an integral number written with a fraction (`3.0`) is that integer. Errors name what
/// was expected and where (`$.field`).
pub(crate) fn json<T: DeserializeOwned>(bytes: &[u8], expected: &str) -> Result<T, ApiError> {
    let invalid = |at: String, e: &dyn std::fmt::Display| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("expected {expected}: {at}: {e}"),
        )
    };
    let mut v: Value = serde_json::from_slice(bytes).map_err(|e| invalid("$".into(), &e))?;
    if let Some(o) = v.as_object_mut() {
        o.retain(|_, x| !x.is_null());
    }
    integral(&mut v);
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            "$".to_string()
        } else {
            format!("$.{path}")
        };
        invalid(at, e.inner())
    })
}

/// 422 `invalid_body` with `message` (a request body that parsed but says something the route cannot take).
pub(crate) fn invalid_body(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
}

/// Numbers with no fractional part (up to 2^53) become integers, as JSON Schema's `integer` reads them.
fn integral(v: &mut Value) {
    match v {
        Value::Number(_) => {
            if v.as_i64().is_none()
                && v.as_u64().is_none()
                && let Some(i) = integer_of(v)
            {
                *v = Value::from(i);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(integral),
        Value::Object(o) => o.values_mut().for_each(integral),
        _ => {}
    }
}

/// The query string as `T` (unknown parameters refused when `T` denies them): 400 `invalid_query`.
pub(crate) fn query<T: DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))
}

/// A page size from the query: `default` when absent, else 1–1000 (400 otherwise).
pub(crate) fn page_limit(limit: Option<i64>, default: i64) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit {limit} must be 1–1000"),
        ));
    }
    Ok(limit as usize)
}

/// Most bytes of one upload (all its files together).
pub const UPLOAD_LIMIT_BYTES: usize = 256 * 1024 * 1024;

/// A multipart upload: its text fields, and its files written under a fresh folder of `home/uploads`.
pub(crate) struct Upload {
    pub fields: Vec<(String, String)>,
    /// (form field, path on disk) of each file, in order.
    pub files: Vec<(String, PathBuf)>,
    pub dir: PathBuf,
}

impl Upload {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Refuses (422) text fields and file fields the route does not read, naming the first one.
    pub fn only(&self, fields: &[&str], files: &[&str]) -> Result<(), ApiError> {
        let stray = self
            .fields
            .iter()
            .map(|(n, _)| n)
            .find(|n| !fields.contains(&n.as_str()))
            .map(|n| format!("text field '{n}'"))
            .or_else(|| {
                self.files
                    .iter()
                    .map(|(n, _)| n)
                    .find(|n| !files.contains(&n.as_str()))
                    .map(|n| format!("file field '{n}'"))
            });
        match stray {
            None => Ok(()),
            Some(s) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!(
                    "{s} is not read here (fields: {}; files: {})",
                    fields.join(", "),
                    files.join(", ")
                ),
            )),
        }
    }
    pub fn file(&self, name: &str) -> Option<&Path> {
        self.files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.as_path())
    }
}

/// A file name safe to put on disk: its last path component, with anything but letters, digits, `.`, `-`
/// and `_` replaced.
fn safe_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let s: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.trim_start_matches('.') {
        "" => "upload".to_string(),
        t => t.to_string(),
    }
}

/// Reads a `multipart/form-data` body: files are streamed to a new folder under `home/uploads` (removed
/// again when the upload fails), text fields kept. 415 without a multipart content type, 413 over
/// [`UPLOAD_LIMIT_BYTES`].
pub(crate) async fn upload(
    home: &Path,
    headers: &HeaderMap,
    body: Body,
) -> Result<Upload, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(ct).map_err(|_| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the files as multipart/form-data (curl -F file=@doc.md)",
        )
    })?;
    let dir = home.join("uploads").join(format!(
        "{}-{:08x}",
        keel_core::time::now_unix_ms(),
        rand::random::<u32>()
    ));
    let result = read_parts(&dir, body, boundary).await;
    if result.is_err() {
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
    result
}

async fn read_parts(dir: &Path, body: Body, boundary: String) -> Result<Upload, ApiError> {
    use tokio::io::AsyncWriteExt;
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(UPLOAD_LIMIT_BYTES as u64)
            .per_field(UPLOAD_LIMIT_BYTES as u64),
    );
    let mut m = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let bad = |e: multer::Error| match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the upload is larger than {UPLOAD_LIMIT_BYTES} bytes"),
            )
        }
        e => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_upload",
            format!("the multipart body could not be read: {e}"),
        ),
    };
    let io = |e: std::io::Error| {
        tracing::error!(error = %e, "could not stage an upload");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the upload could not be stored; the error was logged",
        )
    };
    let mut up = Upload {
        fields: Vec::new(),
        files: Vec::new(),
        dir: dir.to_path_buf(),
    };
    let mut names = std::collections::HashSet::new();
    while let Some(mut field) = m.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        match field.file_name().map(safe_name) {
            None => {
                let text = field.text().await.map_err(bad)?;
                up.fields.push((name, text));
            }
            Some(mut file) => {
                while !names.insert(file.clone()) {
                    file = format!("{}-{file}", names.len());
                }
                tokio::fs::create_dir_all(dir).await.map_err(io)?;
                let path = dir.join(&file);
                let mut f = tokio::fs::File::create(&path).await.map_err(io)?;
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    f.write_all(&chunk).await.map_err(io)?;
                }
                f.sync_all().await.map_err(io)?;
                up.files.push((name, path));
            }
        }
    }
    Ok(up)
}

/// A file a multipart job request may upload: its form field, where its path goes in the spec, and whether
/// the request needs it.
pub(crate) struct UploadedFile {
    pub field: &'static str,
    pub at: &'static [&'static str],
    pub required: bool,
}

/// A job request's body: JSON (paths on the server), or `multipart/form-data` with a `spec` field holding the
/// other fields as JSON and uploaded files whose paths are written into the spec at their places. `finish`
/// turns the JSON into the typed request; when it (or anything before it) refuses the request, the uploaded
/// files are removed.
pub(crate) async fn job_request<T>(
    home: &Path,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    expected: &str,
    files: &[UploadedFile],
    finish: impl FnOnce(Value) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("multipart/"));
    if !multipart {
        let bytes = read_body(body, headers, limit).await?;
        return finish(json(&bytes, expected)?);
    }
    let up = upload(home, headers, body).await?;
    let parsed = (|| {
        let names: Vec<&str> = files.iter().map(|f| f.field).collect();
        up.only(&["spec"], &names)?;
        let mut v: Value = json(up.field("spec").unwrap_or("{}").as_bytes(), expected)?;
        if !v.is_object() {
            return Err(invalid_body("spec: expected a JSON object"));
        }
        for f in files {
            let Some(path) = up.file(f.field) else {
                if f.required {
                    return Err(invalid_body(&format!(
                        "this multipart request needs a file field `{}`",
                        f.field
                    )));
                }
                continue;
            };
            let (last, parents) = f.at.split_last().expect("a place in the spec");
            let mut o = &mut v;
            for p in parents {
                o = o
                    .as_object_mut()
                    .expect("objects all the way down")
                    .entry(*p)
                    .or_insert_with(|| Value::Object(Default::default()));
                if !o.is_object() {
                    return Err(invalid_body(&format!("spec.{p}: expected a JSON object")));
                }
            }
            o.as_object_mut()
                .expect("checked")
                .insert((*last).into(), path.display().to_string().into());
        }
        finish(v)
    })();
    if parsed.is_err() {
        let _ = tokio::fs::remove_dir_all(&up.dir).await;
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::safe_name;

    #[test]
    fn uploaded_names_cannot_escape_the_folder() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("..\\x\\..\\a b.csv"), "a_b.csv");
        assert_eq!(safe_name(".."), "upload");
        assert_eq!(safe_name(".hidden"), "hidden");
    }
}
