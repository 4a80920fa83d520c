//! The read API's routes, parsed from a method and a path.

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /v1/products/{key}`: the model document.
    Product {
        /// The product key.
        key: String,
    },
    /// `GET /v1/receivers/{receiver}/products/{key}`: the product as the
    /// receiver's plugin renders it.
    Rendered {
        /// The receiver id.
        receiver: String,
        /// The product key.
        key: String,
    },
}

/// Every route, as API Gateway declares it (`tests/all/terraform/mod.rs` checks
/// Terraform against this list).
pub const ROUTES: &[&str] = &[
    "GET /v1/products/{key}",
    "GET /v1/receivers/{receiver}/products/{key}",
];

/// Why a request matches no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoute {
    /// No such path (404).
    NotFound,
    /// The path exists, the method does not (405).
    Method,
    /// A path segment is not valid percent-encoded UTF-8 (400).
    BadPath(String),
}

/// Match a request. Path segments are percent-decoded, so a key may hold
/// any character (`/` as `%2F`).
pub fn parse(method: &str, path: &str) -> Result<Route, NoRoute> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let decode = |s: &str| percent_decode(s).ok_or_else(|| NoRoute::BadPath(s.to_owned()));
    let route = match segments.as_slice() {
        ["v1", "products", key] if !key.is_empty() => Route::Product { key: decode(key)? },
        ["v1", "receivers", receiver, "products", key]
            if !key.is_empty() && !receiver.is_empty() =>
        {
            Route::Rendered {
                receiver: decode(receiver)?,
                key: decode(key)?,
            }
        }
        _ => return Err(NoRoute::NotFound),
    };
    if method != "GET" {
        return Err(NoRoute::Method);
    }
    Ok(route)
}

/// `%XX`-decode a path segment; `None` when it is malformed or not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_and_decode() {
        assert_eq!(
            parse("GET", "/v1/products/P-1"),
            Ok(Route::Product { key: "P-1".into() })
        );
        assert_eq!(
            parse("GET", "/v1/receivers/website/products/a%2Fb%20c"),
            Ok(Route::Rendered {
                receiver: "website".into(),
                key: "a/b c".into()
            })
        );
        assert_eq!(parse("GET", "/v1/products/"), Err(NoRoute::NotFound));
        assert_eq!(parse("GET", "/v2/products/P-1"), Err(NoRoute::NotFound));
        assert_eq!(parse("POST", "/v1/products/P-1"), Err(NoRoute::Method));
        assert!(matches!(
            parse("GET", "/v1/products/%zz"),
            Err(NoRoute::BadPath(_))
        ));
        assert!(matches!(
            parse("GET", "/v1/products/%ff"),
            Err(NoRoute::BadPath(_))
        ));
    }
}
