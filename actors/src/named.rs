//! Registered (named) actors, found by name on every call so that a client
//! keeps working across a supervisor's restart: used by the scaler and the
//! pressure detector (the other system actors keep their running instance in
//! a slot of their shared arguments instead).

use std::sync::Arc;

use nexus_swarm_runtime::supervisor::{ChildSpec, StartFn};
use ractor::{Actor, ActorCell, ActorRef};

/// A supervisor child spec that (re)starts `actor` registered as `name`.
/// ractor unregisters a stopping actor's name before its supervisor hears
/// of the failure, so the restarted instance can take the name again.
pub(crate) fn child_spec<A>(name: &str, actor: A, args: A::Arguments) -> ChildSpec
where
    A: Actor + Clone,
    A::Arguments: Clone + Sync,
{
    let registered = name.to_string();
    let start: StartFn = Arc::new(move |sup: ActorCell, _restarts: u32| {
        let actor = actor.clone();
        let args = args.clone();
        let name = registered.clone();
        Box::pin(async move {
            let (r, _) = Actor::spawn_linked(Some(name), actor, args, sup).await?;
            Ok(r.get_cell())
        })
    });
    ChildSpec::new(name, start)
}

/// The actor currently registered as `name`, typed by the caller (each
/// client only ever registers one actor type under its name).
pub(crate) fn lookup<M: ractor::Message>(name: &str) -> Option<ActorRef<M>> {
    ractor::registry::where_is(name).map(ActorRef::from)
}
