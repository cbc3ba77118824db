//! Reading a list from the store: the namespace's key range, the label index for `key=value`
//! selectors, and pagination (`limit`, opaque continue tokens, `remainingItemCount`).

use crate::error::ApiError;
use crate::registry::ResourceType;
use crate::selectors::Selectors;
use crate::store::{Store, key};
use serde_json::Value;
use std::ops::Bound;

/// One page of a list.
#[derive(Clone, Debug)]
pub struct ListPage {
    /// The objects.
    pub items: Vec<Value>,
    /// The store's resourceVersion when the page was read.
    pub rv: u64,
    /// Token for the next page, if any.
    pub continue_token: Option<String>,
    /// Objects after this page, when paginating.
    pub remaining: Option<usize>,
}

impl Store {
    /// Lists objects (all namespaces when `ns` is None), filtered and paginated.
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        selectors: &Selectors,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListPage, ApiError> {
        let inner = self.lock();
        let start = match continue_token.filter(|t| !t.is_empty()) {
            Some(t) => Bound::Excluded(decode_token(t)?),
            None => Bound::Unbounded,
        };
        let mut items = Vec::new();
        let mut continue_token = None;
        let mut remaining = None;
        let gr = rt.group_resource();
        if let Some(bucket) = inner.objects.get(&gr) {
            // Keys are (namespace, name): a namespaced list reads only its namespace's range.
            let start = match (ns, start) {
                (Some(n), Bound::Unbounded) => Bound::Included(key(n, "")),
                (Some(n), Bound::Excluded(k)) if k.0.as_str() < n => Bound::Included(key(n, "")),
                (_, start) => start,
            };
            // With a `key=value` label requirement, only the objects the label index files
            // under the narrowest such requirement are candidates (still in key order, so
            // pagination is unchanged); every candidate is checked against the full selectors.
            let candidates: Box<dyn Iterator<Item = (&(String, String), &Value)>> = match selectors
                .label_equalities()
                .map(|(k, v)| inner.indexes.labelled(&gr, k, v))
                .min_by_key(|keys| keys.len())
            {
                Some(keys) => Box::new(
                    keys.range((start, Bound::Unbounded))
                        .filter_map(|k| bucket.get_key_value(k)),
                ),
                None => Box::new(bucket.range((start, Bound::Unbounded))),
            };
            let mut matching = candidates
                .take_while(|((o_ns, _), _)| ns.is_none_or(|n| n == o_ns))
                .filter(|(_, o)| selectors.matches(o));
            for (k, o) in matching.by_ref() {
                items.push(o.clone());
                if limit.is_some_and(|l| l > 0 && items.len() >= l) {
                    continue_token = Some(encode_token(k));
                    break;
                }
            }
            if continue_token.is_some() {
                let rest = matching.count();
                if rest == 0 {
                    continue_token = None;
                } else {
                    remaining = Some(rest);
                }
            }
        }
        Ok(ListPage {
            items,
            rv: inner.rv,
            continue_token,
            remaining,
        })
    }
}

fn encode_token((ns, name): &(String, String)) -> String {
    format!("{ns}/{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_token(t: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::bad_request(format!("invalid continue token {t:?}"));
    let bytes: Result<Vec<u8>, _> = (0..t.len())
        .step_by(2)
        .map(|i| {
            t.get(i..i + 2)
                .map(|h| u8::from_str_radix(h, 16))
                .ok_or(())
                .and_then(|r| r.map_err(|_| ()))
        })
        .collect();
    let s = String::from_utf8(bytes.map_err(|_| bad())?).map_err(|_| bad())?;
    let (ns, name) = s.split_once('/').ok_or_else(bad)?;
    Ok((ns.to_string(), name.to_string()))
}
