//! A user-written selection algorithm in about 20 lines: prefer targets labelled
//! `zone=local`, else the least loaded of the rest.
//!
//! Run with `cargo run --example custom_algorithm`.

use std::convert::Infallible;

use http::{Request, Response};
use tower::{ServiceExt, service_fn};
use tower_lb::algorithm::{Algorithm, Context, Selector, Targets};
use tower_lb::balance::{Balance, ServedBy};
use tower_lb::{Target, TargetGroup, target::AdminState};

/// Local zone first; within a zone, the target with the fewest requests in flight.
#[derive(Debug)]
struct LocalFirst;

#[derive(Debug)]
struct LocalFirstSelector {
    local: Vec<usize>,
    remote: Vec<usize>,
}

impl Algorithm for LocalFirst {
    fn build(&self, targets: &Targets<'_>) -> Box<dyn Selector> {
        let (local, remote) =
            (0..targets.len()).partition(|&i| targets.get(i).label("zone") == Some("local"));
        Box::new(LocalFirstSelector { local, remote })
    }
}

impl Selector for LocalFirstSelector {
    fn select(&self, cx: &Context<'_>) -> Option<usize> {
        let least = |set: &[usize]| {
            let available = set.iter().copied().filter(|&i| cx.is_available(i));
            available.min_by_key(|&i| cx.in_flight(i))
        };
        least(&self.local).or_else(|| least(&self.remote))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), tower_lb::BoxError> {
    let target = |id: &str, zone: &str| {
        Target::builder(id, "127.0.0.1:8080")
            .label("zone", zone)
            .build()
    };
    let group = TargetGroup::builder("api")
        .algorithm(LocalFirst)
        .target(target("local-1", "local")?)
        .target(target("local-2", "local")?)
        .target(target("remote-1", "remote")?)
        .build()?;
    let balance = Balance::new(group.clone(), |_t: &Target| {
        service_fn(|_r: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) })
    })
    .served_by(true); // tag every response with the target that served it

    let served = |rsp: Response<_>| rsp.extensions().get::<ServedBy>().unwrap().target().clone();
    let first = served(balance.clone().oneshot(Request::new(())).await?);
    println!("with the local zone up:   {first}");
    assert!(first.as_str().starts_with("local"));

    for id in ["local-1", "local-2"] {
        group.set_admin(&id.into(), AdminState::Disabled)?;
    }
    let fallback = served(balance.clone().oneshot(Request::new(())).await?);
    println!("with the local zone down: {fallback}");
    assert_eq!(fallback.as_str(), "remote-1");
    Ok(())
}
