// A full sync plans and drops about a million small allocations at 10k Services; mimalloc serves them
// faster than glibc's malloc and keeps each size class together, which also makes rendering the
// payload read memory in order. Measured in benches/engine.rs; `--no-default-features` builds
// without it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {}
