//! Poll mode: a full list at a fixed interval, shaped as the watcher's re-list events
//! (Init, InitApply per object, InitDone), so the same reflector and Controller run on it.

use futures::Stream;
use kube::api::ListParams;
use kube::runtime::watcher;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::fmt::Debug;
use std::time::Duration;

/// Lists `api` every `interval` (the first time at once).
pub fn poll_events<K>(
    api: Api<K>,
    params: ListParams,
    interval: Duration,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    struct State<K> {
        api: Api<K>,
        params: ListParams,
        pending: VecDeque<watcher::Event<K>>,
        first: bool,
    }
    let state = State {
        api,
        params,
        pending: VecDeque::new(),
        first: true,
    };
    futures::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Some((Ok(ev), st));
            }
            if !st.first {
                tokio::time::sleep(interval).await;
            }
            st.first = false;
            match st.api.list(&st.params).await {
                Ok(list) => {
                    st.pending.push_back(watcher::Event::Init);
                    st.pending
                        .extend(list.items.into_iter().map(watcher::Event::InitApply));
                    st.pending.push_back(watcher::Event::InitDone);
                }
                Err(err) => return Some((Err(watcher::Error::InitialListFailed(err)), st)),
            }
        }
    })
}
