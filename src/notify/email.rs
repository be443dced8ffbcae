//! Email over SMTP (lettre on tokio with rustls): one multipart/alternative message (text and
//! HTML) per delivery. No connection pool: alerts are rare, and a fresh session per message
//! means a restarted SMTP server never leaves a dead connection behind.

use std::time::Duration;

use anyhow::Context;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::delivery::AttemptError;
use crate::config::{SmtpConfig, SmtpTls};

/// A rendered email. Its `Debug` leaves out the bodies: a customer email carries a
/// one-time link.
#[derive(Clone)]
pub struct Email {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email").field("to", &self.to).field("subject", &self.subject).finish_non_exhaustive()
    }
}

/// Sends email through the configured SMTP server.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

impl Mailer {
    /// Builds the transport from `[smtp]`: `tls` chooses implicit TLS, STARTTLS (required,
    /// never downgraded) or plain text; credentials only when a user name is set.
    pub fn new(c: &SmtpConfig, timeout: Duration) -> anyhow::Result<Self> {
        let builder = match c.tls {
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&c.host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&c.host),
            SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host)),
        }
        .with_context(|| format!("smtp.host: cannot set up TLS for {:?}", c.host))?;
        let mut builder = builder.port(c.port).timeout(Some(timeout));
        if !c.username.is_empty() {
            builder = builder.credentials(Credentials::new(c.username.clone(), c.password.expose().to_string()));
        }
        let from: Mailbox =
            c.from.parse().with_context(|| format!("smtp.from: {:?} is not an email address", c.from))?;
        Ok(Self { transport: builder.build(), from })
    }

    /// Builds the message (a parse failure is permanent: retrying cannot fix an address).
    pub fn message(&self, email: &Email) -> Result<Message, AttemptError> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(email.subject.clone())
            .message_id(Some(format!("<{}@vmauto>", uuid::Uuid::new_v4())));
        for to in &email.to {
            let mailbox: Mailbox =
                to.parse().map_err(|e| AttemptError::Permanent(format!("recipient {to:?} is not an address: {e}")))?;
            b = b.to(mailbox);
        }
        b.multipart(MultiPart::alternative_plain_html(email.text.clone(), email.html.clone()))
            .map_err(|e| AttemptError::Permanent(format!("cannot build the message: {e}")))
    }

    /// One attempt: a 5xx reply is permanent, anything else (4xx, network, TLS) is retried.
    pub async fn send_once(&self, message: Message) -> Result<String, AttemptError> {
        match self.transport.send(message).await {
            Ok(reply) => Ok(format!("SMTP {}", reply.code())),
            Err(e) if e.is_permanent() => Err(AttemptError::Permanent(format!("SMTP refused: {e}"))),
            Err(e) => Err(AttemptError::Transient(format!("SMTP: {e}"))),
        }
    }
}
