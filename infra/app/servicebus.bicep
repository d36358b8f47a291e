// Service Bus namespace and the engine's three queues. Local (SAS key) auth is off: the app's identity is the
// only way in. The queue properties are the ones the code relies on; tests/infra checks them against
// devstack/servicebus/topology.json (what every local and CI run uses), functions/*.py and core/settings.py.
param name string
param location string
param tags object = {}
@allowed(['Standard', 'Premium'])
@description('Standard is enough for sessions and duplicate detection; Premium for private networking and steady latency')
param sku string = 'Standard'
param appPrincipalId string
@description('Data Owner (Manage rights) or Data Sender + Data Receiver')
param grantDataOwner bool = true
@description('Private networking (network.bicep, Premium only): public network access off, reached through its private endpoint only')
param privateNetworking bool = false

// The three queues (names = the defaults of CHANGES_QUEUE, FNO_EVENTS_QUEUE and SYNC_PAGES_QUEUE):
// - changes: session per record bucket (the apply function's trigger is session-enabled), duplicate detection on
//   the source event's message id.
// - fno-events: F&O's business events endpoint writes here directly; F&O gives no stable message id, so no
//   duplicate detection.
// - sync-pages: initial-sync and catch-up page jobs, whose message id names the page: a job sent twice is kept once.
// MaxDeliveryCount 10 stays above APPLY_MAX_ATTEMPTS (at most 9): the engine, not the broker, decides when a
// change goes to the error log. Expired messages are dead-lettered, never dropped (the DLQ is the error log).
// TTL is 14 days in Azure (the emulator caps it at one hour): a change waits out a long outage of a target
// (APPLY_RETRY_HORIZON_SECONDS, a day by default) without expiring.
var queues = [
  {
    name: 'changes'
    requiresSession: true
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    lockDuration: 'PT1M'
    maxDeliveryCount: 10
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
  }
  {
    name: 'fno-events'
    requiresSession: false
    requiresDuplicateDetection: false
    duplicateDetectionHistoryTimeWindow: 'PT20S'
    lockDuration: 'PT1M'
    maxDeliveryCount: 10
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
  }
  {
    name: 'sync-pages'
    requiresSession: false
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    lockDuration: 'PT1M'
    maxDeliveryCount: 10
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
  }
]

// Azure Service Bus Data Owner by default: the metrics read the changes queue's depth through the management API
// (core/store/queuedepth.py) and target-based scaling of the Service Bus triggers needs Manage rights too (with
// Listen only it falls back to incremental scaling). grantDataOwner=false assigns Data Sender and Data Receiver
// only: the engine still works, without the queue depth figure and with slower scale-out.
var serviceBusDataOwner = '090c5cfd-751d-490a-894a-3ce6f1109419'
var serviceBusDataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var serviceBusDataReceiver = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
    tier: sku
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
  }
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = [for q in queues: {
  parent: namespace
  name: q.name
  properties: {
    requiresSession: q.requiresSession
    requiresDuplicateDetection: q.requiresDuplicateDetection
    duplicateDetectionHistoryTimeWindow: q.duplicateDetectionHistoryTimeWindow
    lockDuration: q.lockDuration
    maxDeliveryCount: q.maxDeliveryCount
    deadLetteringOnMessageExpiration: q.deadLetteringOnMessageExpiration
    defaultMessageTimeToLive: q.defaultMessageTimeToLive
  }
}]

resource owner 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantDataOwner) {
  name: guid(namespace.id, appPrincipalId, serviceBusDataOwner)
  scope: namespace
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataOwner)
  }
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!grantDataOwner) {
  name: guid(namespace.id, appPrincipalId, serviceBusDataSender)
  scope: namespace
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
  }
}

resource receiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!grantDataOwner) {
  name: guid(namespace.id, appPrincipalId, serviceBusDataReceiver)
  scope: namespace
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiver)
  }
}

output id string = namespace.id
output name string = namespace.name
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
