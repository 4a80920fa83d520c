//! Which queues a receiver's entry may name: only its own, by the naming
//! rule the dispatcher's IAM policy enforces on AWS.

/// The infix that marks a receiver queue: `<prefix>-<env>-rcv-<receiver>`.
pub const RECEIVER_QUEUE_INFIX: &str = "-rcv-";

/// A receiver may only name its own queues. A queue (URL or name) whose
/// name has [`RECEIVER_QUEUE_INFIX`] belongs to the receiver named after it
/// (`<receiver>` for the queue, `<receiver>-dlq` for the dead-letter queue,
/// either with `.fifo`), and that must be `receiver`. Environment names
/// cannot contain the word `rcv` (Terraform validates it), and the
/// dispatcher's role may send only to `<prefix>-<env>-rcv-*`, so on AWS an
/// entry can reach no queue but its receiver's own.
pub fn check_queue_owner(receiver: &str, queue: &str, dead_letters: bool) -> Result<(), String> {
    let name = queue_name(queue)?;
    let Some((_, owner)) = name.split_once(RECEIVER_QUEUE_INFIX) else {
        return Ok(());
    };
    let owner = owner.strip_suffix(".fifo").unwrap_or(owner);
    let expected = if dead_letters {
        format!("{receiver}-dlq")
    } else {
        receiver.to_owned()
    };
    if owner == expected {
        return Ok(());
    }
    let field = if dead_letters {
        "destination.dead_letter_queue"
    } else {
        "destination.queue"
    };
    Err(format!(
        "{field} {queue:?} is not receiver {receiver}'s: a receiver queue is named <prefix>-<env>-rcv-{expected}[.fifo], and this one belongs to {owner:?}"
    ))
}

/// The queue name in `queue`, a queue name or URL, parsed strictly: a name
/// is 1-80 of `A-Z a-z 0-9 - _` with an optional `.fifo` (SQS's rule); a
/// URL is `http(s)://<host>/<12-digit account>/<name>` and nothing more (no
/// user, query, fragment, or path segment before or after). Anything else
/// is refused, so that the name the owner check reads is the name SQS
/// sends to.
pub fn queue_name(queue: &str) -> Result<&str, String> {
    let bad = |why: &str| {
        Err(format!(
            "queue {queue:?} is not a queue name or URL: {why} (a name is 1-80 letters, digits, '-' or '_', with an optional .fifo; a URL is https://<host>/<12-digit account>/<name>)"
        ))
    };
    let name = match queue
        .strip_prefix("https://")
        .or_else(|| queue.strip_prefix("http://"))
    {
        None if queue.contains('/') || queue.contains(':') => {
            return bad("it is neither a plain name nor an http(s) URL");
        }
        None => queue,
        Some(rest) => {
            let mut parts = rest.split('/');
            let (Some(host), Some(account), Some(name), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return bad("a URL has exactly two path segments, the account and the name");
            };
            let host_ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
            if !host_ok {
                return bad("the host is not a DNS name or address");
            }
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                return bad("the account is not 12 digits");
            }
            name
        }
    };
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    let ok = (1..=80).contains(&name.len())
        && !base.is_empty()
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return bad("the name is not a valid SQS queue name");
    }
    Ok(name)
}
