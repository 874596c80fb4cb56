// The PV console page (io/console.h): input to the guest, output from it, as
// two byte rings with free-running indexes. The same in both ABIs.
import { both, xstruct } from './layout.js';

export const xenconsInterface = both((abi) =>
  xstruct('xencons_interface', abi, {
    in: { array: 'u8', count: 1024 },
    out: { array: 'u8', count: 2048 },
    in_cons: 'u32',
    in_prod: 'u32',
    out_cons: 'u32',
    out_prod: 'u32',
  }),
);
