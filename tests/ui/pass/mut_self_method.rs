//! A `&mut self` method: the body mutates `self`, which is skipped.

use cachette::cache;

struct Counter {
    runs: u32,
}

impl Counter {
    #[cache(key = "double:<n>", ttl = 60, skip(self))]
    fn double(&mut self, n: u32) -> u32 {
        self.runs += 1;
        n * 2
    }

    #[cache(key = "triple:<n>", ttl = 60, skip(self))]
    async fn triple(&mut self, n: u32) -> u32 {
        self.runs += 1;
        tokio::task::yield_now().await;
        n * 3
    }
}

#[tokio::main]
async fn main() {
    let mut counter = Counter { runs: 0 };
    assert_eq!(counter.double(4), 8);
    assert_eq!(counter.double(4), 8);
    assert_eq!(counter.runs, 1, "the second call is a hit");
    assert_eq!(counter.double_refresh(4), 8);
    assert_eq!(counter.double_uncached(4), 8);
    assert_eq!(counter.runs, 3);
    assert_eq!(Counter::double_key(4), "double:4");
    Counter::double_invalidate(4).unwrap();
    Counter::double_put(5, 0).unwrap();
    assert_eq!(counter.double(5), 0);

    assert_eq!(counter.triple(2).await, 6);
    assert_eq!(counter.triple(2).await, 6);
    assert_eq!(counter.runs, 4, "the second call is a hit");
    assert_eq!(counter.triple_refresh(2).await, 6);
    assert_eq!(counter.triple_uncached(2).await, 6);
    Counter::triple_invalidate(2).await.unwrap();
    Counter::triple_put(2, 7).await.unwrap();
    assert_eq!(counter.triple(2).await, 7);
    assert_eq!(Counter::triple_key(2), "triple:2");
}
