// xenstored 4.17's per-domain limits (xenstored_core.c quota_*), applied to
// unprivileged domains only. Outstanding requests per domain
// (quota_req_outstanding, 20) belong to the transports: a transport stops
// reading a ring with that many outstanding. Of the memory quotas (2 MB soft,
// 2.5 MB hard) the hard one bounds what xenkvm keeps on a domain's account
// beyond its nodes: the versions its changes leave for open transactions, and
// what waits for it in its ring; the node, size and watch limits bound the rest.
import { XENSTORE_REL_PATH_MAX } from '../xen/abi/xenstore.js';

export interface Quotas {
  /** Nodes a domain may own (quota_nb_entry_per_domain): ENOSPC beyond. */
  nodesPerDomain: number;
  /** Bytes of a node record a domain may write (quota_max_entry_size): 24 + 8 per permission + value + child names with their NULs must stay below it, else ENOSPC. */
  entrySize: number;
  /** Watches per domain (quota_nb_watch_per_domain): E2BIG once a domain has more than this many. */
  watchesPerDomain: number;
  /** Open transactions per connection (quota_max_transaction): ENOSPC once more than this many are open. */
  transactionsPerDomain: number;
  /** Entries in a SET_PERMS list (quota_nb_perms_per_node): ENOSPC beyond. */
  permsPerNode: number;
  /** Characters of a path after its /local/domain/<domid>/ prefix (quota_max_path_len): EINVAL beyond. Applies to domain 0 too. */
  pathLength: number;
  /** Distinct nodes one transaction may touch (quota_trans_nodes): ENOSPC, and the transaction can no longer commit. */
  nodesPerTransaction: number;
  /** Bytes of old versions a domain's changes may leave for open transactions to read (quota_memory_per_domain_hard): ENOMEM beyond. */
  historyBytesPerDomain: number;
}

export const DEFAULT_QUOTAS: Quotas = Object.freeze({
  nodesPerDomain: 1000,
  entrySize: 2048,
  watchesPerDomain: 128,
  transactionsPerDomain: 10,
  permsPerNode: 5,
  pathLength: XENSTORE_REL_PATH_MAX,
  nodesPerTransaction: 1024,
  historyBytesPerDomain: 2.5 * 1024 * 1024,
});
