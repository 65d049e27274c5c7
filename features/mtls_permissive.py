from features._mtls import PeerAuthenticationMode


class MtlsPermissive(PeerAuthenticationMode):
    id = "mtls-permissive"
    title = "mTLS PERMISSIVE"
    category = "security"
    mode = "PERMISSIVE"
    problem = ("Can we encrypt traffic between sidecars now, while callers outside the mesh keep sending "
               "plaintext?")
    pitfalls = (
        "PERMISSIVE accepts plaintext too: it encrypts, it does not protect. Plan STRICT.",
        "Workloads without sidecars keep sending plaintext; check mesh coverage before STRICT.",
    )
    docs = "https://istio.io/latest/docs/tasks/security/authentication/mtls-migration/"


FEATURE = MtlsPermissive()
