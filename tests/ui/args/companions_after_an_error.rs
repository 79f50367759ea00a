//! An attribute error still leaves the function and its companions in
//! place, with the signatures they would have: code that calls them reports
//! nothing beyond the attribute's own errors.

use cachette::cache;

struct Db;

impl Db {
    fn name(&self, id: u64) -> Result<Option<String>, std::io::Error> {
        Ok(Some(id.to_string()))
    }
}

#[cache(key = "user:<id>", skip(db))]
async fn user(db: &Db, id: u64) -> Result<Option<String>, std::io::Error> {
    db.name(id)
}

#[cache(key = "square:<n>", ttl = 60, colour = "blue")]
fn square(n: u64) -> u64 {
    n * n
}

struct Repo {
    tenant: String,
}

impl Repo {
    #[cache(key = "<self.tenant>:<id>", ttll = 60)]
    fn order(&self, id: u32) -> Option<u32> {
        Some(id + self.tenant.len() as u32)
    }

    #[cache(key = "bump:<id>", ttl = 0, skip(self))]
    async fn bump(&mut self, id: u32) -> u32 {
        id
    }
}

#[cache(key = "make:<T>:<id>")]
fn make<T: Default + Clone>(id: u32) -> Vec<T> {
    vec![T::default(); id as usize]
}

async fn callers(db: &Db) -> Result<(), cachette::Error> {
    let _: String = user_key(1);
    user_invalidate(1).await?;
    user_put(1, Some("one".to_owned())).await?;
    let _: Result<Option<String>, std::io::Error> = user(db, 1).await;
    let _: Result<Option<String>, std::io::Error> = user_refresh(db, 1).await;
    let _: Result<Option<String>, std::io::Error> = user_uncached(db, 1).await;

    let _: String = square_key(2);
    square_invalidate(2)?;
    square_put(2, 4)?;
    let _: u64 = square(2) + square_refresh(2) + square_uncached(2);

    let mut repo = Repo {
        tenant: "acme".to_owned(),
    };
    let _: String = repo.order_key(1);
    repo.order_invalidate(1)?;
    repo.order_put(1, Some(2))?;
    let _: Option<u32> = repo.order(1).or(repo.order_refresh(1)).or(repo.order_uncached(1));

    let _: String = Repo::bump_key(3);
    Repo::bump_invalidate(3).await?;
    Repo::bump_put(3, 4).await?;
    let _: u32 = repo.bump(3).await + repo.bump_refresh(3).await + repo.bump_uncached(3).await;

    let _: String = make_key::<u8>(1);
    make_invalidate::<u8>(1)?;
    make_put::<u8>(1, vec![1])?;
    let _: Vec<u8> = make::<u8>(1);
    let _: Vec<u8> = make_refresh::<u8>(1);
    let _: Vec<u8> = make_uncached::<u8>(1);
    Ok(())
}

fn main() {
    let _ = callers(&Db);
}
