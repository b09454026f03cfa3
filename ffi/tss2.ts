// Raw bun:ffi bindings to the system's tpm2-tss libraries: symbols and C types only, no
// logic. Structs never cross this boundary laid out by hand: callers build TPM wire bytes
// and convert them with the libtss2-mu (un)marshal functions (see src/tpm/tpm.ts).
//
// Libraries are opened by soname, so a compiled dsm binary uses the system's copies:
//   libtss2-esys.so.0  libtss2-tctildr.so.0  libtss2-mu.so.0  libtss2-rc.so.0
import { dlopen, FFIType } from "bun:ffi";

const P = FFIType.ptr;
const U32 = FFIType.u32;
const U16 = FFIType.u16;
const U64 = FFIType.u64;
const U8 = FFIType.u8;
const I32 = FFIType.i32;

/** ESYS_TR values of tss2_esys.h. */
export const ESYS_TR_NONE = 0xfff;
export const ESYS_TR_PASSWORD = 0x0ff;
export const ESYS_TR_RH_OWNER = 0x101;
export const ESYS_TR_RH_NULL = 0x107;
export const ESYS_TR_RH_ENDORSEMENT = 0x10b;
export const ESYS_TR_PCR0 = 0;
export const TPM2_SU_CLEAR = 0x0000;
/** TPM2_CAP_HANDLES of tss2_tpm2_types.h; with property 0x81000000 (TPM2_HR_PERSISTENT) it lists persistent handles. */
export const TPM2_CAP_HANDLES = 0x00000001;
export const TPM2_HR_PERSISTENT = 0x81000000;
/** TPM2_CAP_TPM_PROPERTIES; TPM2_PT_NV_BUFFER_MAX (TPM2_PT_FIXED + 44) is the largest NV_Read/NV_Write chunk. */
export const TPM2_CAP_TPM_PROPERTIES = 0x00000006;
export const TPM2_PT_NV_BUFFER_MAX = 0x0000012c;
/** TPM2_SE session types (u8). */
export const TPM2_SE_HMAC = 0x00;
export const TPM2_SE_POLICY = 0x01;
/** TPMA_SESSION bits (u8). */
export const TPMA_SESSION_CONTINUESESSION = 0x01;
export const TPMA_SESSION_DECRYPT = 0x20;
export const TPMA_SESSION_ENCRYPT = 0x40;

/** Generous sizes for unmarshal targets: each is larger than sizeof() of its C struct (tss 3.x). */
export const STRUCT_BYTES = 4096;

const esysSymbols = {
  Esys_Initialize: { args: [P, P, P], returns: U32 },
  Esys_Finalize: { args: [P], returns: FFIType.void },
  Esys_Free: { args: [P], returns: FFIType.void },
  Esys_Startup: { args: [P, U16], returns: U32 },
  // ctx, primaryHandle, s1, s2, s3, inSensitive, inPublic, outsideInfo, creationPCR,
  // objectHandle*, outPublic**, creationData**, creationHash**, creationTicket**
  Esys_CreatePrimary: { args: [P, U32, U32, U32, U32, P, P, P, P, P, P, P, P, P], returns: U32 },
  // ctx, keyHandle, s1, s2, s3, digest, inScheme, validation, signature**
  Esys_Sign: { args: [P, U32, U32, U32, U32, P, P, P, P], returns: U32 },
  // ctx, signHandle, s1, s2, s3, qualifyingData, inScheme, PCRselect, quoted**, signature**
  Esys_Quote: { args: [P, U32, U32, U32, U32, P, P, P, P, P], returns: U32 },
  // ctx, s1, s2, s3, pcrSelectionIn, pcrUpdateCounter*, pcrSelectionOut**, pcrValues**
  Esys_PCR_Read: { args: [P, U32, U32, U32, P, P, P, P], returns: U32 },
  // ctx, pcrHandle, s1, s2, s3, digests
  Esys_PCR_Extend: { args: [P, U32, U32, U32, U32, P], returns: U32 },
  // ctx, auth, objectHandle, s1, s2, s3, persistentHandle, newObjectHandle*
  Esys_EvictControl: { args: [P, U32, U32, U32, U32, U32, U32, P], returns: U32 },
  // ctx, tpm_handle, s1, s2, s3, object*
  Esys_TR_FromTPMPublic: { args: [P, U32, U32, U32, U32, P], returns: U32 },
  // ctx, objectHandle, s1, s2, s3, outPublic**, name**, qualifiedName**
  Esys_ReadPublic: { args: [P, U32, U32, U32, U32, P, P, P], returns: U32 },
  Esys_FlushContext: { args: [P, U32], returns: U32 },
  // ctx, s1, s2, s3, capability, property, propertyCount, moreData* (TPMI_YES_NO, u8), capabilityData**
  Esys_GetCapability: { args: [P, U32, U32, U32, U32, U32, U32, P, P], returns: U32 },
  // ctx, nvIndex, s1, s2, s3, nvPublic**, nvName**
  Esys_NV_ReadPublic: { args: [P, U32, U32, U32, U32, P, P], returns: U32 },
  // ctx, authHandle, nvIndex, s1, s2, s3, size (u16), offset (u16), data**
  Esys_NV_Read: { args: [P, U32, U32, U32, U32, U32, U16, U16, P], returns: U32 },
  // ctx, tpmKey, bind, s1, s2, s3, nonceCaller (may be NULL), sessionType (TPM2_SE, u8), symmetric, authHash (u16), sessionHandle*
  Esys_StartAuthSession: { args: [P, U32, U32, U32, U32, U32, P, U8, P, U16, P], returns: U32 },
  // ctx, session, flags (TPMA_SESSION, u8), mask (u8)
  Esys_TRSess_SetAttributes: { args: [P, U32, U8, U8], returns: U32 },
  // ctx, session, flags* (u8)
  Esys_TRSess_GetAttributes: { args: [P, U32, P], returns: U32 },
  // ctx, objectHandle, signHandle, s1, s2, s3, qualifyingData, inScheme, certifyInfo**, signature**
  Esys_Certify: { args: [P, U32, U32, U32, U32, U32, P, P, P, P], returns: U32 },
  // ctx, activateHandle, keyHandle, s1, s2, s3, credentialBlob, secret, certInfo**
  Esys_ActivateCredential: { args: [P, U32, U32, U32, U32, U32, P, P, P], returns: U32 },
  // ctx, authHandle, policySession, s1, s2, s3, nonceTPM, cpHashA, policyRef, expiration (i32), timeout**, policyTicket**
  Esys_PolicySecret: { args: [P, U32, U32, U32, U32, U32, P, P, P, I32, P, P], returns: U32 },
  // ctx, policySession, s1, s2, s3, pHashList
  Esys_PolicyOR: { args: [P, U32, U32, U32, U32, P], returns: U32 },
  // ctx, policySession, s1, s2, s3, policyDigest**
  Esys_PolicyGetDigest: { args: [P, U32, U32, U32, U32, P], returns: U32 },
  // ctx, handle, name**
  Esys_TR_GetName: { args: [P, U32, P], returns: U32 },
} as const;

const tctiSymbols = {
  Tss2_TctiLdr_Initialize: { args: [FFIType.cstring, P], returns: U32 },
  Tss2_TctiLdr_Finalize: { args: [P], returns: FFIType.void },
} as const;

const rcSymbols = {
  Tss2_RC_Decode: { args: [U32], returns: FFIType.cstring },
} as const;

// TSS2_RC Tss2_MU_<T>_Marshal(const T *src, uint8_t buffer[], size_t size, size_t *offset)
// TSS2_RC Tss2_MU_<T>_Unmarshal(const uint8_t buffer[], size_t size, size_t *offset, T *dest)
const MARSHAL = { args: [P, P, U64, P], returns: U32 } as const;
const UNMARSHAL = { args: [P, U64, P, P], returns: U32 } as const;

const muSymbols = {
  Tss2_MU_TPM2B_PUBLIC_Marshal: MARSHAL,
  Tss2_MU_TPM2B_PUBLIC_Unmarshal: UNMARSHAL,
  Tss2_MU_TPM2B_SENSITIVE_CREATE_Unmarshal: UNMARSHAL,
  Tss2_MU_TPM2B_DATA_Unmarshal: UNMARSHAL,
  Tss2_MU_TPML_PCR_SELECTION_Unmarshal: UNMARSHAL,
  Tss2_MU_TPML_PCR_SELECTION_Marshal: MARSHAL,
  Tss2_MU_TPM2B_DIGEST_Unmarshal: UNMARSHAL,
  Tss2_MU_TPMT_SIG_SCHEME_Unmarshal: UNMARSHAL,
  Tss2_MU_TPMT_TK_HASHCHECK_Unmarshal: UNMARSHAL,
  Tss2_MU_TPMT_SIGNATURE_Marshal: MARSHAL,
  Tss2_MU_TPM2B_ATTEST_Marshal: MARSHAL,
  Tss2_MU_TPML_DIGEST_Marshal: MARSHAL,
  Tss2_MU_TPML_DIGEST_VALUES_Unmarshal: UNMARSHAL,
  Tss2_MU_TPMS_CAPABILITY_DATA_Marshal: MARSHAL,
  Tss2_MU_TPM2B_NV_PUBLIC_Marshal: MARSHAL,
  Tss2_MU_TPM2B_MAX_NV_BUFFER_Marshal: MARSHAL,
  Tss2_MU_TPMT_SYM_DEF_Unmarshal: UNMARSHAL,
  Tss2_MU_TPM2B_NONCE_Unmarshal: UNMARSHAL,
  Tss2_MU_TPM2B_ID_OBJECT_Unmarshal: UNMARSHAL,
  Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal: UNMARSHAL,
  Tss2_MU_TPM2B_DIGEST_Marshal: MARSHAL,
  Tss2_MU_TPML_DIGEST_Unmarshal: UNMARSHAL,
  Tss2_MU_TPM2B_NAME_Marshal: MARSHAL,
} as const;

export type Tss2Libraries = {
  esys: ReturnType<typeof dlopen<typeof esysSymbols>>["symbols"];
  tcti: ReturnType<typeof dlopen<typeof tctiSymbols>>["symbols"];
  rc: ReturnType<typeof dlopen<typeof rcSymbols>>["symbols"];
  mu: ReturnType<typeof dlopen<typeof muSymbols>>["symbols"];
};

export const LIBRARIES = {
  esys: "libtss2-esys.so.0",
  tcti: "libtss2-tctildr.so.0",
  rc: "libtss2-rc.so.0",
  mu: "libtss2-mu.so.0",
} as const;

const libcSymbols = {
  setenv: { args: [FFIType.cstring, FFIType.cstring, FFIType.i32], returns: FFIType.i32 },
} as const;

/** libc setenv: tpm2-tss reads its variables (TSS2_LOG) with C getenv, which process.env does not reach. */
export function cSetenv(name: string, value: string, overwrite: boolean): void {
  const libc = dlopen("libc.so.6", libcSymbols).symbols;
  libc.setenv(Buffer.from(`${name}\0`), Buffer.from(`${value}\0`), overwrite ? 1 : 0);
}

/** Opens the four libraries; throws the dlopen error of the first that is missing, naming it. */
export function openTss2(names: Record<keyof typeof LIBRARIES, string> = LIBRARIES): Tss2Libraries {
  const open = <S extends Record<string, { args: readonly FFIType[]; returns: FFIType }>>(lib: string, symbols: S) => {
    try {
      return dlopen(lib, symbols).symbols;
    } catch (e) {
      throw Object.assign(new Error(`${lib}: ${(e as Error).message}`), { library: lib });
    }
  };
  return {
    esys: open(names.esys, esysSymbols),
    tcti: open(names.tcti, tctiSymbols),
    rc: open(names.rc, rcSymbols),
    mu: open(names.mu, muSymbols),
  };
}
