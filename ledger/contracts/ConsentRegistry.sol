// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

/// @title HealthLedger consent registry
/// @notice Records patient-signed grants and revocations, answers `isActive`, anchors the access log, and
///         holds the registry of patient keys: which address signs for which pseudonymous account.
/// @dev No PHI reaches the chain: a patient is a per-patient pseudonymous address and a scope is a salted
///      commitment whose salt never leaves the database. Each grant costs exactly one new storage word:
///      everything `isActive` needs is packed into it, everything else is emitted as an event.
contract ConsentRegistry is EIP712 {
    /// @dev A grant is the patient's signature over Grant(patient, Terms). Nesting the terms lets a revocation
    ///      name the grant by (patient, hashTerms(terms)): two words of calldata instead of six, while the
    ///      patient is still bound by the full 256-bit grant id.
    struct Terms {
        address grantee;
        bytes32 scopeCommitment; // keccak256(secret salt || canonical scope); that salt stays off chain
        uint64 notBefore; // unix seconds, inclusive
        uint64 notAfter; // unix seconds, exclusive
        bytes32 salt; // public nonce: two otherwise identical grants get distinct ids
    }

    struct Grant {
        address patient; // the signer: a per-patient pseudonymous address
        Terms terms;
    }

    struct SignedGrant {
        Grant grant;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    bytes32 public constant TERMS_TYPEHASH =
        keccak256("Terms(address grantee,bytes32 scopeCommitment,uint64 notBefore,uint64 notAfter,bytes32 salt)");
    bytes32 public constant GRANT_TYPEHASH = keccak256(
        "Grant(address patient,Terms terms)Terms(address grantee,bytes32 scopeCommitment,uint64 notBefore,uint64 notAfter,bytes32 salt)"
    );
    bytes32 public constant REVOKE_TYPEHASH = keccak256("Revoke(bytes32 grantId)");
    bytes32 public constant KEY_REGISTRATION_TYPEHASH =
        keccak256("KeyRegistration(bytes32 account,address key,address previous)");
    bytes32 public constant KEY_RESET_CANCEL_TYPEHASH = keccak256("KeyResetCancel(bytes32 account,address key)");

    /// @notice How long an operator-assisted key reset waits before it can take effect: the patient is told,
    ///         and her registered key can cancel it meanwhile.
    uint64 public constant KEY_RESET_DELAY = 7 days;

    // Layout of a grant word: notBefore | notAfter << 64 | revoked << 128 | accessTag << 136.
    uint256 private constant _NOT_AFTER_SHIFT = 64;
    uint256 private constant _REVOKED_BIT = 1 << 128;
    uint256 private constant _TAG_SHIFT = 136;
    uint256 private constant _U64 = type(uint64).max;

    /// @notice The relayer that anchors the access log; set once at deployment.
    address public immutable operator;

    /// @notice Running hash over every anchor (root, size) in order; start value is nonzero so that an
    ///         anchor rewrites a used slot (5,000 gas) instead of filling an empty one (22,100).
    bytes32 public anchorHead;

    mapping(bytes32 id => uint256 word) private _grants;

    /// @dev account: keccak of the record id (pseudonymous, no PHI). A key belongs to one account forever,
    ///      so a key that was ever registered can never be registered again, for this account or another.
    mapping(bytes32 account => address key) private _keys;
    mapping(address key => bytes32 account) private _accounts;
    // Whether a key is the one registered for its account today: what a grant checks, in one storage read.
    mapping(address key => bool current) private _current;

    struct PendingReset {
        address key;
        uint64 readyAt;
    }

    mapping(bytes32 account => PendingReset) private _resets;

    event GrantRecorded(
        bytes32 indexed id, address indexed patient, address indexed grantee, bytes32 scopeCommitment
    );
    event GrantRevoked(bytes32 indexed id);
    event AccessLogAnchored(bytes32 indexed root, uint64 size, bytes32 head);
    /// @notice previous is zero for a first registration; reset is true when no signature of `previous`
    ///         authorised the change (an operator-assisted reset that waited KEY_RESET_DELAY).
    event KeyRegistered(bytes32 indexed account, address indexed key, address previous, bool reset);
    event KeyResetRequested(bytes32 indexed account, address indexed key, address current, uint64 readyAt);
    event KeyResetCancelled(bytes32 indexed account, address indexed key);

    error NotOperator();
    error InvalidSigner();
    error InvalidWindow();
    error GrantExpired(bytes32 id);
    error GrantExists(bytes32 id);
    error UnknownGrant(bytes32 id);
    error GrantAlreadyRevoked(bytes32 id);
    error KeyNotCurrent(address key);
    error AccountRegistered(bytes32 account);
    error AccountUnregistered(bytes32 account);
    error KeyUsed(address key);
    error NoPendingReset(bytes32 account);
    error ResetNotReady(bytes32 account, uint64 readyAt);

    constructor(address operator_) EIP712("HealthLedger ConsentRegistry", "1") {
        operator = operator_;
        anchorHead = keccak256("HealthLedger access log anchors v1");
    }

    /// @notice Record one patient-signed grant. Anyone may relay it: the signature is what counts.
    function recordGrant(Grant calldata grant, uint8 v, bytes32 r, bytes32 s) external {
        _record(grant, v, r, s);
    }

    /// @notice Record several patient-signed grants in one transaction; any invalid one reverts them all.
    function recordGrants(SignedGrant[] calldata batch) external {
        uint256 count = batch.length;
        for (uint256 i = 0; i < count; ++i) {
            SignedGrant calldata item = batch[i];
            _record(item.grant, item.v, item.r, item.s);
        }
    }

    /// @notice Revoke a grant with the patient's signature over Revoke(grantId). The grant is named by its
    ///         patient and terms hash, so the signer is checked against the patient inside the grant id itself;
    ///         the key registered for that patient's account today may revoke it too (grants survive a rotation,
    ///         and a patient who lost the old key can still end them).
    function revoke(address patient, bytes32 termsHash, uint8 v, bytes32 r, bytes32 s) external {
        bytes32 id = keccak256(abi.encode(GRANT_TYPEHASH, patient, termsHash));
        uint256 word = _grants[id];
        if (word == 0) revert UnknownGrant(id);
        if (word & _REVOKED_BIT != 0) revert GrantAlreadyRevoked(id);
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(REVOKE_TYPEHASH, id)));
        address signer = ECDSA.recover(digest, v, r, s);
        if (signer != patient && signer != _keys[_accounts[patient]]) revert InvalidSigner();
        _grants[id] = word | _REVOKED_BIT;
        emit GrantRevoked(id);
    }

    /// @notice Register the first key of an account; the key signs KeyRegistration(account, key, 0). Relayed by
    ///         the operator only, so nobody can squat an account before its patient registers.
    function registerKey(bytes32 account, address key, bytes calldata signature) external {
        if (msg.sender != operator) revert NotOperator();
        if (_keys[account] != address(0)) revert AccountRegistered(account);
        _requireSigned(hashKeyRegistration(account, key, address(0)), signature, key);
        _bind(account, key, address(0), false);
    }

    /// @notice Replace the account's key: both the new key and the registered one sign
    ///         KeyRegistration(account, key, previous). Anyone may relay it; a pending reset is dropped.
    function rotateKey(bytes32 account, address key, bytes calldata keySignature, bytes calldata previousSignature)
        external
    {
        address previous = _keys[account];
        if (previous == address(0)) revert AccountUnregistered(account);
        bytes32 structHash = hashKeyRegistration(account, key, previous);
        _requireSigned(structHash, keySignature, key);
        _requireSigned(structHash, previousSignature, previous);
        delete _resets[account];
        _bind(account, key, previous, false);
    }

    /// @notice Operator-assisted recovery for a patient who lost her key and its phrase: after an identity
    ///         check, the operator relays the new key's signature over KeyRegistration(account, key, current).
    ///         Nothing changes for KEY_RESET_DELAY; the registered key can cancel it meanwhile.
    function requestKeyReset(bytes32 account, address key, bytes calldata keySignature) external {
        if (msg.sender != operator) revert NotOperator();
        address current = _keys[account];
        if (current == address(0)) revert AccountUnregistered(account);
        _requireSigned(hashKeyRegistration(account, key, current), keySignature, key);
        if (_accounts[key] != bytes32(0)) revert KeyUsed(key);
        uint64 readyAt = uint64(block.timestamp) + KEY_RESET_DELAY;
        _resets[account] = PendingReset(key, readyAt);
        emit KeyResetRequested(account, key, current, readyAt);
    }

    /// @notice The registered key refuses a pending reset: it signs KeyResetCancel(account, pending key).
    function cancelKeyReset(bytes32 account, bytes calldata signature) external {
        address pending = _resets[account].key;
        if (pending == address(0)) revert NoPendingReset(account);
        bytes32 structHash = keccak256(abi.encode(KEY_RESET_CANCEL_TYPEHASH, account, pending));
        _requireSigned(structHash, signature, _keys[account]);
        delete _resets[account];
        emit KeyResetCancelled(account, pending);
    }

    /// @notice Complete a reset once its delay has passed (anyone may send it). Grants signed by the replaced
    ///         key stay in force; the new key can revoke them.
    function completeKeyReset(bytes32 account) external {
        PendingReset memory pending = _resets[account];
        if (pending.key == address(0)) revert NoPendingReset(account);
        if (block.timestamp < pending.readyAt) revert ResetNotReady(account, pending.readyAt);
        delete _resets[account];
        _bind(account, pending.key, _keys[account], true);
    }

    /// @notice Anchor the access log: a Merkle root over its first `size` entries. Operator only.
    function anchor(bytes32 root, uint64 size) external {
        if (msg.sender != operator) revert NotOperator();
        bytes32 head = keccak256(abi.encode(anchorHead, root, size));
        anchorHead = head;
        emit AccessLogAnchored(root, size, head);
    }

    /// @notice True when the grant exists, is not revoked, covers this grantee and scope, and
    ///         notBefore <= block.timestamp < notAfter.
    function isActive(bytes32 id, address grantee, bytes32 scopeCommitment) external view returns (bool) {
        uint256 word = _grants[id];
        if (word == 0 || word & _REVOKED_BIT != 0) return false;
        if (word >> _TAG_SHIFT != _accessTag(grantee, scopeCommitment)) return false;
        uint256 notBefore = word & _U64;
        uint256 notAfter = (word >> _NOT_AFTER_SHIFT) & _U64;
        return notBefore <= block.timestamp && block.timestamp < notAfter;
    }

    /// @notice What the chain holds for a grant, for reconciliation; all zero when it was never recorded.
    function grantState(bytes32 id)
        external
        view
        returns (bool recorded, bool revoked, uint64 notBefore, uint64 notAfter)
    {
        uint256 word = _grants[id];
        return (word != 0, word & _REVOKED_BIT != 0, uint64(word), uint64(word >> _NOT_AFTER_SHIFT));
    }

    /// @notice The grant id: the EIP-712 struct hash (domain-free, so the same grant has one id everywhere;
    ///         the signature, not the id, binds the chain and this contract).
    function hashGrant(Grant calldata grant) public pure returns (bytes32) {
        return keccak256(abi.encode(GRANT_TYPEHASH, grant.patient, hashTerms(grant.terms)));
    }

    /// @notice The EIP-712 struct hash of a grant's terms (what a revocation names the grant by).
    function hashTerms(Terms calldata terms) public pure returns (bytes32) {
        return keccak256(
            abi.encode(TERMS_TYPEHASH, terms.grantee, terms.scopeCommitment, terms.notBefore, terms.notAfter, terms.salt)
        );
    }

    /// @notice The key registered for an account today (zero: none), and a key's account (zero: never registered).
    function keyOf(bytes32 account) external view returns (address) {
        return _keys[account];
    }

    function accountOf(address key) external view returns (bytes32) {
        return _accounts[key];
    }

    /// @notice A reset waiting for its delay: the new key and when it can complete (zero when none).
    function pendingKeyReset(bytes32 account) external view returns (address key, uint64 readyAt) {
        PendingReset memory pending = _resets[account];
        return (pending.key, pending.readyAt);
    }

    /// @notice The EIP-712 struct hash of KeyRegistration(account, key, previous).
    function hashKeyRegistration(bytes32 account, address key, address previous) public pure returns (bytes32) {
        return keccak256(abi.encode(KEY_REGISTRATION_TYPEHASH, account, key, previous));
    }

    /// @notice The EIP-712 domain separator (chain id and this address are part of it).
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function _record(Grant calldata grant, uint8 v, bytes32 r, bytes32 s) private {
        Terms calldata terms = grant.terms;
        if (terms.notAfter <= terms.notBefore) revert InvalidWindow();
        bytes32 id = hashGrant(grant);
        if (terms.notAfter <= block.timestamp) revert GrantExpired(id);
        if (_grants[id] != 0) revert GrantExists(id);
        if (ECDSA.recover(_hashTypedDataV4(id), v, r, s) != grant.patient) revert InvalidSigner();
        _requireCurrent(grant.patient);
        // notAfter > notBefore >= 0, so the word is never zero: zero means "never recorded".
        _grants[id] = uint256(terms.notBefore) | (uint256(terms.notAfter) << _NOT_AFTER_SHIFT)
            | (_accessTag(terms.grantee, terms.scopeCommitment) << _TAG_SHIFT);
        emit GrantRecorded(id, grant.patient, terms.grantee, terms.scopeCommitment);
    }

    /// @dev Grants are signed by the key registered for an account today: never by an unregistered key, never
    ///      by one a rotation or a reset replaced.
    function _requireCurrent(address key) private view {
        if (!_current[key]) revert KeyNotCurrent(key);
    }

    function _requireSigned(bytes32 structHash, bytes calldata signature, address expected) private view {
        if (ECDSA.recoverCalldata(_hashTypedDataV4(structHash), signature) != expected) revert InvalidSigner();
    }

    function _bind(bytes32 account, address key, address previous, bool reset) private {
        if (key == address(0) || account == bytes32(0)) revert InvalidSigner();
        if (_accounts[key] != bytes32(0)) revert KeyUsed(key);
        _accounts[key] = account;
        _keys[account] = key;
        _current[key] = true;
        if (previous != address(0)) _current[previous] = false;
        emit KeyRegistered(account, key, previous, reset);
    }

    /// @dev 120 bits of keccak(grantee, scopeCommitment): finding a second (grantee, scope) pair with the same
    ///      tag for a given grant costs about 2^120 hashes.
    function _accessTag(address grantee, bytes32 scopeCommitment) private pure returns (uint256) {
        return uint256(keccak256(abi.encode(grantee, scopeCommitment))) >> _TAG_SHIFT;
    }
}
