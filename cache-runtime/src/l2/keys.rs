//! The stored form's names: entry keys, generation keys, lock keys and the
//! invalidation channel, all under the cache's prefix.

use crate::invalidate::GenId;

/// Names things in the shared store for one cache.
#[derive(Debug, Clone)]
pub(crate) struct StoredKeys {
    /// `"myapp:"`, or empty.
    prefix: String,
}

impl StoredKeys {
    pub(crate) fn new(prefix: &str) -> StoredKeys {
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}:")
        };
        StoredKeys { prefix }
    }

    /// The invalidation channel.
    pub(crate) fn channel(&self) -> String {
        format!("{}#events", self.prefix)
    }

    /// The key of an entry: prefix, namespace and its generation, version,
    /// then the logical key (the `{fn}_key` form without its namespace and
    /// version, which are written here).
    pub(crate) fn entry(
        &self,
        namespace: Option<(&str, u64)>,
        version: u32,
        rendered: &str,
    ) -> String {
        let mut version_buffer = itoa::Buffer::new();
        let version = version_buffer.format(version);
        let mut generation_buffer = itoa::Buffer::new();
        let mut key = String::with_capacity(self.prefix.len() + 48 + rendered.len());
        key.push_str(&self.prefix);
        if let Some((ns, generation)) = namespace {
            key.push_str(ns);
            key.push('@');
            key.push_str(generation_buffer.format(generation));
            key.push(':');
        }
        key.push('v');
        key.push_str(version);
        key.push(':');
        key.push_str(rendered);
        key
    }

    /// The key of a generation.
    pub(crate) fn generation(&self, id: &GenId) -> String {
        let (kind, name) = match id {
            GenId::Clear => ("clear", ""),
            GenId::KeySlot(_) => ("key:", ""),
            GenId::Namespace(ns) => ("ns:", ns.as_str()),
            GenId::Tag(tag) => ("tag:", tag.as_str()),
        };
        let mut key = String::with_capacity(self.prefix.len() + 10 + name.len());
        key.push_str(&self.prefix);
        key.push_str("#gen:");
        key.push_str(kind);
        key.push_str(name);
        if let GenId::KeySlot(slot) = id {
            key.push_str(itoa::Buffer::new().format(*slot));
        }
        key
    }

    /// The single-flight lock of an entry.
    pub(crate) fn lock(&self, entry_key: &str) -> String {
        format!("{}#lock:{entry_key}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_keys_read_as_the_readme_shows() {
        let keys = StoredKeys::new("myapp");
        assert_eq!(
            keys.entry(Some(("users", 3)), 1, "user:42"),
            "myapp:users@3:v1:user:42"
        );
        assert_eq!(keys.entry(None, 1, "user:42"), "myapp:v1:user:42");
        assert_eq!(
            keys.generation(&GenId::Tag("org:7".into())),
            "myapp:#gen:tag:org:7"
        );
        assert_eq!(
            keys.generation(&GenId::Namespace("users".into())),
            "myapp:#gen:ns:users"
        );
        assert_eq!(keys.generation(&GenId::KeySlot(17)), "myapp:#gen:key:17");
        assert_eq!(keys.generation(&GenId::Clear), "myapp:#gen:clear");
        assert_eq!(
            keys.lock("myapp:v1:user:42"),
            "myapp:#lock:myapp:v1:user:42"
        );
        assert_eq!(keys.channel(), "myapp:#events");
        assert_eq!(StoredKeys::new("").entry(None, 2, "k"), "v2:k");
    }
}
