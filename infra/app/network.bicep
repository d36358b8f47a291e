// Private networking (main.bicep's privateNetworking, off by default): a virtual network, the Function App's
// outbound integration subnet, and private endpoints for the storage account (blob, table, queue), Key Vault and
// Service Bus, each with its private DNS zone linked to the network and a DNS zone group, so the app resolves the
// usual host names (st....blob.core.windows.net, sb-....servicebus.windows.net, kv-....vault.azure.net) to private
// addresses. The modules of those resources turn their public network access off when the option is on.
//
// Elastic Premium only. Flex Consumption has VNet integration too (its subnet is delegated to
// Microsoft.App/environments, not Microsoft.Web/serverFarms), but this deployment reads its secrets as Key Vault
// references, and Flex Consumption cannot resolve a reference to a vault behind a firewall or private endpoint
// (Microsoft's Flex Consumption page: Key Vault references fail with network-restricted vaults), and users report
// Flex deployments failing once the package's storage account is closed to the internet. So FC1 is refused here
// rather than left half-private. Service Bus takes private endpoints on its Premium tier only.
// The refusal is the @allowed lists below: ARM validates a module's parameters when the module deploys (only
// when privateNetworking is on), so `planSku=FC1` or `serviceBusSku=Standard` with the option fails the
// deployment naming the parameter and what it allows. `python -m infra.plan` and tests/infra check the same
// offline.
param name string
param location string
param tags object = {}
@allowed(['EP1', 'EP2', 'EP3'])
@description('Private networking needs the Elastic Premium plan (EP1-EP3): Flex Consumption cannot read Key Vault references through a private endpoint')
param planSku string
@allowed(['Premium'])
@description('Private networking needs Service Bus Premium: private endpoints exist on the Premium tier only')
param serviceBusSku string
@description('Address space of the virtual network; the two subnets are its first two /24s')
param addressPrefix string = '10.20.0.0/16'
param storageAccountId string
param keyVaultId string
param serviceBusNamespaceId string

var appSubnetName = 'app'
var endpointSubnetName = 'private-endpoints'

// One private endpoint per service the app reaches (groupId = the sub-resource), and the private DNS zone Microsoft
// names for it (Azure public cloud). The Functions host uses blob (leases, timers) and queue (the storage
// extension's internal queues); the engine uses table.
var endpoints = [
  {
    name: 'blob'
    groupId: 'blob'
    zone: 'privatelink.blob.core.windows.net'
    target: storageAccountId
  }
  {
    name: 'table'
    groupId: 'table'
    zone: 'privatelink.table.core.windows.net'
    target: storageAccountId
  }
  {
    name: 'queue'
    groupId: 'queue'
    zone: 'privatelink.queue.core.windows.net'
    target: storageAccountId
  }
  {
    name: 'vault'
    groupId: 'vault'
    zone: 'privatelink.vaultcore.azure.net'
    target: keyVaultId
  }
  {
    name: 'servicebus'
    groupId: 'namespace'
    zone: 'privatelink.servicebus.windows.net'
    target: serviceBusNamespaceId
  }
]

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        // Outbound VNet integration of the Elastic Premium plan: one plan per subnet, delegated to App Service.
        name: appSubnetName
        properties: {
          addressPrefix: cidrSubnet(addressPrefix, 24, 0)
          delegations: [
            {
              name: 'serverFarms'
              properties: {
                serviceName: 'Microsoft.Web/serverFarms'
              }
            }
          ]
        }
      }
      {
        name: endpointSubnetName
        properties: {
          addressPrefix: cidrSubnet(addressPrefix, 24, 1)
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

resource zones 'Microsoft.Network/privateDnsZones@2020-06-01' = [for e in endpoints: {
  name: e.zone
  location: 'global'
  tags: tags
}]

// Without the link the app's DNS (Azure DNS through the integration) would not see the zone and would resolve the
// public address, which public network access off then refuses.
resource links 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [for (e, i) in endpoints: {
  parent: zones[i]
  name: '${name}-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

resource endpoint 'Microsoft.Network/privateEndpoints@2023-11-01' = [for (e, i) in endpoints: {
  name: 'pe-${e.name}-${name}'
  location: location
  tags: tags
  dependsOn: [
    vnet // the subnet is named through resourceId(), which makes no dependency of its own
  ]
  properties: {
    subnet: {
      id: resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, endpointSubnetName)
    }
    privateLinkServiceConnections: [
      {
        name: e.name
        properties: {
          privateLinkServiceId: e.target
          groupIds: [
            e.groupId
          ]
        }
      }
    ]
  }
}]

// The zone group writes the endpoint's A record into its zone (and keeps it when the address changes).
resource zoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2023-11-01' = [for (e, i) in endpoints: {
  parent: endpoint[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: replace(e.zone, '.', '-')
        properties: {
          privateDnsZoneId: zones[i].id
        }
      }
    ]
  }
}]

output appSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, appSubnetName)
output name string = vnet.name
