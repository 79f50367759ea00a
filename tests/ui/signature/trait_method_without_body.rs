use cachette::cache;

trait Store {
    #[cache(key = "a:<id>", ttl = 60)]
    fn get(&self, id: u32) -> u32;
}

fn main() {}
