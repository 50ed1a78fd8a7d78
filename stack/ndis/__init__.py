"""NDIS 6: NET_BUFFER_LISTs, the miniport and protocol interfaces, and `netvmini`.

Public API for the transport (tcpip) and whoever builds hosts (names are stable):

Building a host
    ``install_nic(kernel, mac, *, name=None, mtu=1500, link_speed_bps=10**9,
    offloads=None, tx_ring_size=256, rx_ring_size=256, interrupt_moderation_ns=0,
    run=True) -> (EmulatedNic, Adapter)``: loads ndis + the `netvmini` driver
    for that NIC (through IoLoadDriver, on the scheduler) and brings the
    adapter to Running (with run=True it runs the scheduler until it is).
    The adapter starts with packet filter DIRECTED|ALL_MULTICAST|BROADCAST;
    OID_GEN_CURRENT_PACKET_FILTER changes it.
    ``ndis_state(kernel) -> NdisState``: ``.adapters``, ``.protocols``,
    ``.opens``, ``.miniport_drivers``, ``.nbl_pools``, ``.nbl_log``
    (`NblLogEntry` rows), ``.pending_nbls()``, ``.adapter_by_name(name)``.

Protocol side (what tcpip calls)
    ``NdisRegisterProtocolDriver(ProtocolDriverContext, ProtocolCharacteristics:
    NDIS_PROTOCOL_DRIVER_CHARACTERISTICS) -> (status, NdisProtocolHandle)``.
    Characteristics callbacks (all optional but Receive/SendComplete):
      BindAdapterHandlerEx(ProtocolDriverContext, BindContext, BindParameters: NDIS_BIND_PARAMETERS) -> status
      UnbindAdapterHandlerEx(UnbindContext, ProtocolBindingContext) -> status
      ReceiveNetBufferListsHandler(ProtocolBindingContext, NetBufferLists, PortNumber,
                                   NumberOfNetBufferLists, ReceiveFlags)
      SendNetBufferListsCompleteHandler(ProtocolBindingContext, NetBufferLists, SendCompleteFlags)
      StatusHandlerEx(ProtocolBindingContext, StatusIndication: NDIS_STATUS_INDICATION)
      OidRequestCompleteHandler(ProtocolBindingContext, OidRequest, Status)
      NetPnPEventHandler(ProtocolBindingContext, NetPnPEventNotification) -> status
    Binding is done by NDIS as a separate scheduler event, once per Running
    adapter (and for adapters that come up later): it calls
    BindAdapterHandlerEx, which calls
    ``NdisOpenAdapterEx(NdisProtocolHandle, ProtocolBindingContext, OpenParameters:
    NDIS_OPEN_PARAMETERS, BindContext) -> (status, NdisBindingHandle)``.
    (A protocol without a bind handler may call NdisOpenAdapterEx with
    ``NDIS_OPEN_PARAMETERS(AdapterName=...)`` and BindContext=None itself.)
    ``NdisSendNetBufferLists(NdisBindingHandle, NetBufferLists, PortNumber, SendFlags)``
    ``NdisReturnNetBufferLists(NdisBindingHandle, NetBufferLists, ReturnFlags)``
    ``NdisOidRequest(NdisBindingHandle, OidRequest: NDIS_OID_REQUEST) -> status``
    ``NdisCloseAdapterEx(NdisBindingHandle) -> status``
    An indicated NBL chain belongs to the protocol until it calls
    NdisReturnNetBufferLists - except with NDIS_RECEIVE_FLAGS_RESOURCES, when
    it must copy what it needs before returning from the receive handler.

NET_BUFFER_LIST / NET_BUFFER
    ``NetBufferList`` (alias NET_BUFFER_LIST) fields: Next, FirstNetBuffer,
    Context, ParentNetBufferList, NdisPoolHandle, SourceHandle, Status, Flags,
    NetBufferListInfo (list of ints, indexes TcpIpChecksumNetBufferListInfo,
    TcpLargeSendNetBufferListInfo...), ProtocolReserved / MiniportReserved
    (Python lists for the owner's use); ``.address``; ``.nbs()``; ``.chain()``.
    ``NetBuffer`` (alias NET_BUFFER): Next, CurrentMdl, CurrentMdlOffset,
    DataLength, MdlChain, DataOffset; ``views(offset=0, length=None) ->
    list[memoryview]`` (zero copy); ``.address``.
    Pools: ``NdisAllocateNetBufferListPool(NdisHandle, Parameters:
    NET_BUFFER_LIST_POOL_PARAMETERS) -> NblPool`` (fAllocateNetBuffer,
    DataSize: NBLs come with an NB and DataSize bytes of nonpaged data),
    ``NdisFreeNetBufferListPool``, ``NdisAllocateNetBufferPool(NdisHandle,
    NET_BUFFER_POOL_PARAMETERS)``, ``NdisFreeNetBufferPool``,
    ``NdisAllocateNetBufferAndNetBufferList(PoolHandle, ContextSize,
    ContextBackFill, MdlChain, DataOffset, DataLength)``,
    ``NdisAllocateNetBufferList(PoolHandle, ContextSize, ContextBackFill)``,
    ``NdisAllocateNetBuffer(PoolHandle, MdlChain, DataOffset, DataLength)``,
    ``NdisFreeNetBuffer(nb)``, ``NdisFreeNetBufferList(nbl)``,
    ``NdisRetreatNetBufferDataStart(nb, DataOffsetDelta, DataBackFill,
    AllocateMdlHandler=None) -> status``, ``NdisAdvanceNetBufferDataStart(nb,
    DataOffsetDelta, FreeMdl, FreeMdlHandler=None)``,
    ``NdisGetDataBuffer(nb, BytesNeeded, Storage, AlignMultiple=1,
    AlignOffset=0) -> memoryview | None``,
    ``NdisAllocateMdl(NdisHandle, VirtualAddress, Length)``, ``NdisFreeMdl``,
    ``NdisAllocateMemoryWithTagPriority(NdisHandle, Length, Tag, Priority) -> va``,
    ``NdisFreeMemory(va, Length, MemoryFlags)``.
    Info helpers: ``csum_tx_info(...)``, ``lso_v2_info(mss, tcp_header_offset,
    ipv6=False)``, ``NDIS_CSUM_RX_*`` bits, ``lso_mss(info)``.

Miniport side (what netvmini calls)
    ``NdisMRegisterMiniportDriver``, ``NdisMSetMiniportAttributes``,
    ``NdisMRegisterInterruptEx``, ``NdisMSendNetBufferListsComplete``,
    ``NdisMIndicateReceiveNetBufferLists``, ``NdisMIndicateStatusEx``,
    ``NdisMOidRequestComplete``, ``NdisMPauseComplete``,
    ``NdisMRestartComplete``; ``ndis_pause_adapter(adapter)`` /
    ``ndis_restart_adapter(adapter)`` run NDIS's pause/restart of a miniport.

Events: ``NblSent``, ``NblSendCompleted``, ``NblIndicated``, ``NblReturned``,
``OidRequested`` (stack.kernel.events.Event subclasses).
"""

from .constants import *  # noqa: F401,F403
from .constants import ndis_status_name, oid_name  # noqa: F401
from .events import NblIndicated, NblReturned, NblSendCompleted, NblSent, OidRequested  # noqa: F401
from .install import install_nic, ndis_state  # noqa: F401
from .miniport import (NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, NDIS_MINIPORT_DRIVER_CHARACTERISTICS,  # noqa: F401
                       NDIS_MINIPORT_INIT_PARAMETERS, NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS, Adapter,
                       MiniportDriver, NdisInterrupt, NdisMDeregisterInterruptEx, NdisMDeregisterMiniportDriver,
                       NdisMIndicateReceiveNetBufferLists, NdisMIndicateStatusEx, NdisMOidRequestComplete,
                       NdisMPauseComplete, NdisMRegisterInterruptEx, NdisMRegisterMiniportDriver,
                       NdisMRestartComplete, NdisMSendNetBufferListsComplete, NdisMSetMiniportAttributes,
                       ndis_pause_adapter, ndis_restart_adapter)
from .nbl import (NET_BUFFER, NET_BUFFER_LIST, NET_BUFFER_LIST_POOL_PARAMETERS, NET_BUFFER_POOL_PARAMETERS,  # noqa: F401
                  NbPool, NblPool, NetBuffer, NetBufferList, NdisAdvanceNetBufferDataStart, NdisAllocateMdl,
                  NdisAllocateMemoryWithTagPriority, NdisAllocateNetBuffer, NdisAllocateNetBufferAndNetBufferList,
                  NdisAllocateNetBufferList, NdisAllocateNetBufferListPool, NdisAllocateNetBufferPool, NdisFreeMdl,
                  NdisFreeMemory, NdisFreeNetBuffer, NdisFreeNetBufferList, NdisFreeNetBufferListPool,
                  NdisFreeNetBufferPool, NdisGetDataBuffer, NdisRetreatNetBufferDataStart, build_sg_list,
                  NET_BUFFER_CURRENT_MDL, NET_BUFFER_CURRENT_MDL_OFFSET, NET_BUFFER_DATA_LENGTH,
                  NET_BUFFER_DATA_OFFSET, NET_BUFFER_FIRST_MDL, NET_BUFFER_LIST_FIRST_NB, NET_BUFFER_LIST_INFO,
                  NET_BUFFER_LIST_NEXT_NBL, NET_BUFFER_LIST_STATUS, NET_BUFFER_NEXT_NB, nbl_chain_count)
from .oid import NDIS_OFFLOAD, NDIS_OFFLOAD_PARAMETERS, NDIS_OID_REQUEST, NDIS_STATISTICS_INFO  # noqa: F401
from .ownership import (NBL_ALLOCATED, NBL_FREED, NBL_INDICATED, NBL_MINIPORT_SEND_COMPLETED,  # noqa: F401
                        NBL_PROTOCOL_RETURNED, NBL_PROTOCOL_SENT, NBL_RETURNED_TO_MINIPORT, NBL_SEND_COMPLETED,
                        NBL_SENT_TO_MINIPORT, NblLogEntry)
from .protocol import (NDIS_BIND_PARAMETERS, NDIS_OPEN_PARAMETERS, NDIS_PROTOCOL_DRIVER_CHARACTERISTICS,  # noqa: F401
                       NDIS_STATUS_INDICATION, NET_PNP_EVENT_NOTIFICATION, NdisCloseAdapterEx,
                       NdisDeregisterProtocolDriver, NdisOidRequest, NdisOpen, NdisOpenAdapterEx, NdisProtocol,
                       NdisRegisterProtocolDriver, NdisReturnNetBufferLists, NdisSendNetBufferLists)
from .state import NdisState  # noqa: F401
