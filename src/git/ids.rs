//! Commit ids between gix and converge's model: `model::CommitId` is 20 bytes
//! and knows nothing of gix; gix's `ObjectId` may one day hold other hashes.
//! converge supports SHA-1 repositories only, so a longer id is an error
//! ([`GitError::NotSha1`]), never a panic.

use gix::ObjectId;

use crate::model::CommitId;

use super::GitError;

impl From<CommitId> for ObjectId {
    fn from(id: CommitId) -> Self {
        ObjectId::Sha1(*id.as_bytes())
    }
}

impl TryFrom<ObjectId> for CommitId {
    type Error = GitError;

    fn try_from(id: ObjectId) -> Result<Self, Self::Error> {
        <[u8; 20]>::try_from(id.as_slice())
            .map(CommitId::from_bytes)
            .map_err(|_| GitError::NotSha1 { id: id.to_string() })
    }
}

/// The model's id of a commit gix found (SHA-1 only).
pub fn commit_id(id: ObjectId) -> Result<CommitId, GitError> {
    CommitId::try_from(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_ids_round_trip_through_gix() {
        let hex = "0123456789abcdef0123456789abcdef01234567";
        let oid = ObjectId::from_hex(hex.as_bytes()).expect("hex");
        let id = commit_id(oid).expect("sha-1");
        assert_eq!(id.to_string(), hex);
        assert_eq!(ObjectId::from(id), oid);
    }
}
